package event

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// NormalizeEmail is an address as ad platforms match it before hashing:
// leading and trailing white space trimmed and every letter lower case,
// as Meta's customer-file guide asks for an EMAIL field. Nothing else is
// changed: Meta documents no removal of dots or "+tag" suffixes, and the
// address the person gave is the one their account most likely has.
func NormalizeEmail(addr string) string {
	return strings.ToLower(strings.TrimSpace(addr))
}

// HashEmail is the identifier Herald gives an ad platform for an address:
// the lower-case hex SHA-256 of NormalizeEmail(addr). Every service that
// hashes an address uses it, so that render's creative and dispatch's
// audience upload name a person alike.
func HashEmail(addr string) string {
	sum := sha256.Sum256([]byte(NormalizeEmail(addr)))
	return hex.EncodeToString(sum[:])
}

// ValidEmail reports whether a normalized address could be one: a
// non-empty local part and domain around its last '@', and no white
// space. It does not try to be RFC 5321; it keeps junk from being hashed
// and sent as if it were a person.
func ValidEmail(normalized string) bool {
	at := strings.LastIndexByte(normalized, '@')
	return at > 0 && at < len(normalized)-1 && !strings.ContainsAny(normalized, " \t\r\n\v\f")
}

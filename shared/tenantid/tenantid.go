// Package tenantid defines what a tenant id is: 1 to 64 ASCII letters,
// digits, '_', '.' or '-', starting with a letter or digit. The edge checks
// the token's tenant claim against it before the claim becomes X-Tenant-ID,
// ingest checks the header, and ingest checks the tenant of every signed
// link and provider event: one rule, so that no two places can read one id
// two ways.
//
// A value is valid exactly as given. Nothing is trimmed or folded: an id
// with surrounding whitespace is not the id without it, it is refused,
// because HTTP trims header values and would otherwise turn " acme" into
// "acme" on its way to ingest.
package tenantid

// MaxLen is the longest tenant id.
const MaxLen = 64

// Syntax describes a valid id, for error messages.
const Syntax = "1-64 ASCII letters, digits, _ . or -, starting with a letter or digit"

// Valid reports whether s is a tenant id, exactly as given.
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen || !alnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

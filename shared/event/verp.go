package event

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// A VERP return path (variable envelope return path) gives every delivery
// its own envelope sender, bounce+<token>@<return domain>, so that a bounce
// that arrives hours later, from any receiver in any format, names the one
// delivery it is about in the address it is sent to. Dispatch writes these
// addresses and ingest, which receives the bounces, reads them: both use
// this one codec, so the two can never disagree on a token.
//
// What the token holds. RFC 5321 caps a local part at 64 octets, and a
// delivery key (tenant, job, channel, customer) does not fit: the job's
// UUID alone is 26 characters of base32, and tenant and customer ids may be
// 64 characters or more. No reversible encoding works for every key, and
// one that worked only for short keys would make bounces of long ones
// unattributable. The token is instead the 128-bit hash that is already
// the delivery's Message-ID (DeliveryKey.MessageID: 32 hex digits, then
// @domain), which the ledger stores in deliveries.message_id for every
// email; that hash is what Parse gives back, and the ledger finds the one
// delivery with it. It is followed by an 80-bit HMAC-SHA256 of the hash
// under a secret, so that an address no one was sent from is refused
// before any lookup: a forger has to guess 2^80 values for one delivery.
//
// How it is spelled. Hash and MAC, 26 bytes, are base32 in lower case
// without padding: 42 letters and digits, a local part of 49 octets with
// the prefix. Base32 because receivers and relays may change the case of a
// local part, which base64 would not survive; Parse accepts either case.
const (
	verpPrefix   = "bounce+"
	verpHashLen  = 16 // bytes of the Message-ID hash
	verpMACLen   = 10 // bytes of HMAC-SHA256 kept
	maxLocalPart = 64 // RFC 5321 section 4.5.3.1.1
)

var verpEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Errors of ReturnPath.Parse.
var (
	// ErrNotVERP: the address is not a return path of this domain.
	ErrNotVERP = errors.New("not a VERP return path")
	// ErrForgedVERP: the address has the shape of a return path, but its
	// MAC does not match: no delivery was sent from it.
	ErrForgedVERP = errors.New("VERP return path with a wrong MAC")
)

// ReturnPath makes and reads VERP envelope senders.
type ReturnPath struct {
	// Domain is the return domain: its MX receives the bounces. For SPF to
	// align with the From domain under DMARC it is the From domain or one
	// of its subdomains.
	Domain string
	// Secret keys the MAC. Changing it makes the tokens of mail already
	// sent unreadable, so it is rotated only after bounces have stopped
	// arriving for them (a few days).
	Secret []byte
}

// Validate reports a return path that could not be used.
func (r ReturnPath) Validate() error {
	switch {
	case r.Domain == "" || strings.ContainsAny(r.Domain, "@<> \t\r\n"):
		return fmt.Errorf("VERP return domain %q is not a domain", r.Domain)
	case len(r.Secret) < 16:
		return errors.New("VERP secret must have at least 16 bytes")
	}
	return nil
}

// Address returns the envelope sender of key's delivery.
func (r ReturnPath) Address(key DeliveryKey) string {
	hash := messageHash(key)
	token := append(hash[:], r.mac(hash[:])...)
	return verpPrefix + strings.ToLower(verpEncoding.EncodeToString(token)) + "@" + r.Domain
}

// Parse returns the delivery hash carried by addr, a return path Address
// made: the 32 lower-case hex digits before the @ of the delivery's
// Message-ID, by which the ledger finds it. Angle brackets around addr are
// ignored, and the token's case does not matter. An address whose MAC does
// not match is ErrForgedVERP, so a caller looks up only real deliveries.
func (r ReturnPath) Parse(addr string) (string, error) {
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || !strings.EqualFold(domain, r.Domain) || len(local) > maxLocalPart ||
		len(local) < len(verpPrefix) || !strings.EqualFold(local[:len(verpPrefix)], verpPrefix) {
		return "", fmt.Errorf("%w: %q", ErrNotVERP, addr)
	}
	token, err := verpEncoding.DecodeString(strings.ToUpper(local[len(verpPrefix):]))
	if err != nil || len(token) != verpHashLen+verpMACLen {
		return "", fmt.Errorf("%w: %q", ErrNotVERP, addr)
	}
	hash, mac := token[:verpHashLen], token[verpHashLen:]
	if !hmac.Equal(mac, r.mac(hash)) {
		return "", fmt.Errorf("%w: %q", ErrForgedVERP, addr)
	}
	return hex.EncodeToString(hash), nil
}

func (r ReturnPath) mac(hash []byte) []byte {
	m := hmac.New(sha256.New, r.Secret)
	m.Write([]byte("herald verp\x00"))
	m.Write(hash)
	return m.Sum(nil)[:verpMACLen]
}

// messageHash is the hash in key's Message-ID, decoded.
func messageHash(key DeliveryKey) [verpHashLen]byte {
	local, _, _ := strings.Cut(key.MessageID(""), "@")
	var h [verpHashLen]byte
	if _, err := hex.Decode(h[:], []byte(local)); err != nil {
		panic("DeliveryKey.MessageID is not 32 hex digits: " + err.Error())
	}
	return h
}

// Package dkimsign signs outgoing email with DKIM (RFC 6376), so that
// mailbox providers can verify that the sending domain vouches for each
// message — its unsubscribe headers included, which Gmail and Yahoo
// require of bulk senders before they honour one-click unsubscribe.
//
// Signatures use relaxed/relaxed canonicalization and SHA-256, with an RSA
// (rsa-sha256) or Ed25519 (ed25519-sha256, RFC 8463) key. Every signed
// header is oversigned: its name appears in h= once more than the message
// has it, so a header added on the way (a second List-Unsubscribe, a
// Reply-To) breaks the signature instead of riding on it.
//
// Cost: the key operation dominates. An RSA-2048 signature takes about a
// millisecond of CPU, Ed25519 a few tens of microseconds (see
// BenchmarkSign). Not every receiver verifies Ed25519 yet, so a sender
// that wants both signs twice: wrap with the Ed25519 signer, then the RSA
// one.
package dkimsign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"herald/dispatch/internal/provider"
)

// DefaultHeaders are the header fields signed when Config.Headers is nil:
// those that say who sent what to whom, how to read it, and how to leave
// the list; and Reply-To and Cc, which Herald's messages lack, so that
// nobody can add them.
var DefaultHeaders = []string{
	"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
	"List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID", "Reply-To", "Cc",
}

// Config names the signing domain and its key.
type Config struct {
	// Domain is the signing domain (d=); the public key is published at
	// <Selector>._domainkey.<Domain>.
	Domain string
	// Selector is the key's selector (s=).
	Selector string
	// KeyPEM is the private key in PEM: PKCS#8 ("PRIVATE KEY", RSA or
	// Ed25519) or PKCS#1 ("RSA PRIVATE KEY"). RSA keys must have at least
	// 1024 bits (RFC 8301); 2048 is what receivers expect.
	KeyPEM []byte
	// Headers overrides DefaultHeaders. It must include From.
	Headers []string
	// Expiration, when positive, makes signatures expire (x=) that long
	// after signing.
	Expiration time.Duration
}

// Signer signs messages with one key. It is safe for concurrent use.
type Signer struct {
	opts       dkim.SignOptions
	expiration time.Duration
	public     crypto.PublicKey
}

// New checks cfg and loads its key.
func New(cfg Config) (*Signer, error) {
	if cfg.Domain == "" || cfg.Selector == "" {
		return nil, errors.New("dkim: domain and selector are required")
	}
	key, err := ParseKey(cfg.KeyPEM)
	if err != nil {
		return nil, err
	}
	headers := cfg.Headers
	if headers == nil {
		headers = DefaultHeaders
	}
	hasFrom := false
	var keys []string
	for _, h := range headers {
		hasFrom = hasFrom || strings.EqualFold(h, "From")
		keys = append(keys, h, h) // the second occurrence oversigns
	}
	if !hasFrom {
		return nil, errors.New("dkim: the signed headers must include From")
	}
	s := &Signer{
		opts: dkim.SignOptions{
			Domain:                 cfg.Domain,
			Selector:               cfg.Selector,
			Signer:                 key,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             keys,
		},
		expiration: cfg.Expiration,
		public:     key.Public(),
	}
	// Sign once now, so that a key the library cannot use fails at start.
	if _, err := s.Sign([]byte("From: a@example.com\r\n\r\n")); err != nil {
		return nil, err
	}
	return s, nil
}

// ParseKey reads a PEM private key that DKIM can sign with.
func ParseKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("dkim: no PEM block in the key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("dkim: unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: parse key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("dkim: RSA key of %d bits is too short", k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("dkim: unsupported key type %T", key)
	}
}

// DNSRecord returns the TXT record to publish at
// <selector>._domainkey.<domain>.
func (s *Signer) DNSRecord() string {
	switch k := s.public.(type) {
	case *rsa.PublicKey:
		der, _ := x509.MarshalPKIXPublicKey(k)
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k)
	}
	return ""
}

// Sign returns msg with a DKIM-Signature header field in front. Line ends
// are made CRLF first, as SMTP will send them, so that what is signed is
// what arrives.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	msg = crlf(msg)
	opts := s.opts
	if s.expiration > 0 {
		opts.Expiration = time.Now().Add(s.expiration)
	}
	sg, err := dkim.NewSigner(&opts)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	if _, err := sg.Write(msg); err != nil {
		_ = sg.Close()
		return nil, fmt.Errorf("dkim: %w", err)
	}
	if err := sg.Close(); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	sig := sg.Signature()
	out := make([]byte, 0, len(sig)+len(msg))
	out = append(out, sig...)
	return append(out, msg...), nil
}

// crlf returns msg with every line ending in CRLF; a lone CR or LF counts
// as a line end. A message that already conforms is returned as is.
func crlf(msg []byte) []byte {
	lf := bytes.Count(msg, []byte{'\n'})
	if lf == bytes.Count(msg, []byte{'\r'}) && lf == bytes.Count(msg, []byte("\r\n")) {
		return msg
	}
	out := make([]byte, 0, len(msg)+lf+16)
	for i := 0; i < len(msg); i++ {
		switch c := msg[i]; c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(msg) && msg[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// Wrap returns a Sender that signs every message's Body before next sends
// it. A message that cannot be signed is not sent: its result is Failed,
// since sending it unsigned would fail DMARC at the receiver instead.
func (s *Signer) Wrap(next provider.Sender) provider.Sender {
	return &signing{signer: s, next: next}
}

type signing struct {
	signer *Signer
	next   provider.Sender
}

func (w *signing) Name() string     { return w.next.Name() }
func (w *signing) Idempotent() bool { return w.next.Idempotent() }

func (w *signing) Send(ctx context.Context, msgs []*provider.Message) []provider.Result {
	out := make([]provider.Result, len(msgs))
	signed := make([]*provider.Message, 0, len(msgs))
	at := make([]int, 0, len(msgs)) // signed[j] is msgs[at[j]]
	for i, m := range msgs {
		body, err := w.signer.Sign(m.Body)
		if err != nil {
			out[i] = provider.Result{Outcome: provider.Failed, Reason: "sign: " + err.Error()}
			continue
		}
		c := *m
		c.Body = body
		signed = append(signed, &c)
		at = append(at, i)
	}
	if len(signed) == 0 {
		return out
	}
	for j, res := range w.next.Send(ctx, signed) {
		out[at[j]] = res
	}
	return out
}

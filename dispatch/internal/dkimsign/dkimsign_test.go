package dkimsign_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"herald/devtools/mailcatch"
	"herald/dispatch/internal/dkimsign"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/smtpout"
)

var (
	keysOnce sync.Once
	keys     map[string][]byte // PEM by name
)

// testKeys returns PEM keys of every supported kind, generated once.
func testKeys(t testing.TB) map[string][]byte {
	t.Helper()
	keysOnce.Do(func() {
		keys = map[string][]byte{}
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		pkcs8, _ := x509.MarshalPKCS8PrivateKey(rk)
		keys["rsa-2048"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
		keys["rsa-2048-pkcs1"] = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
		_, ek, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		pkcs8, _ = x509.MarshalPKCS8PrivateKey(ek)
		keys["ed25519"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	})
	return keys
}

// email is shaped like render's output.
func email(body string) []byte {
	return []byte("From: Shop <news@shop.example>\r\n" +
		"To: Ann <ann@example.com>\r\n" +
		"Subject: =?utf-8?q?Black_Friday_starts_now?=\r\n" +
		"Date: Fri, 27 Nov 2026 09:00:00 +0000\r\n" +
		"Message-ID: <0123456789abcdef@herald.test>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"List-Unsubscribe: <https://herald.test/u/tok123>\r\n" +
		"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
		"Feedback-ID: job1:tenant1:herald\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n" +
		"\r\n" + body)
}

func newSigner(t testing.TB, key string) *dkimsign.Signer {
	t.Helper()
	s, err := dkimsign.New(dkimsign.Config{Domain: "shop.example", Selector: "herald", KeyPEM: testKeys(t)[key]})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verify checks msg's signatures against the signer's published record,
// served by a stub instead of DNS.
func verify(t *testing.T, s *dkimsign.Signer, msg []byte) error {
	t.Helper()
	lookups := 0
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			lookups++
			if domain != "herald._domainkey.shop.example" {
				return nil, fmt.Errorf("no such name %s", domain)
			}
			return []string{s.DNSRecord()}, nil
		},
	})
	if err != nil {
		return err
	}
	if len(vs) != 1 || lookups != 1 {
		t.Fatalf("%d signatures, %d lookups; want 1 and 1", len(vs), lookups)
	}
	if vs[0].Domain != "shop.example" {
		t.Errorf("signature by %q", vs[0].Domain)
	}
	return vs[0].Err
}

func TestSignatureVerifiesAndCoversTheUnsubscribeHeaders(t *testing.T) {
	body := "Hello Ann,=0D=0A\r\n.a line with a dot\r\n\r\n\r\n"
	tamper := []struct {
		name  string
		edit  func(string) string
		valid bool
	}{
		{"untouched", func(m string) string { return m }, true},
		{"header whitespace", func(m string) string { return strings.Replace(m, "Subject: ", "Subject:    ", 1) }, true},
		{"header case", func(m string) string {
			return strings.Replace(m, "\r\nList-Unsubscribe-Post:", "\r\nlist-unsubscribe-post:", 1)
		}, true},
		{"trailing blank lines", func(m string) string { return m + "\r\n\r\n" }, true},
		{"List-Unsubscribe changed", func(m string) string {
			return strings.Replace(m, "https://herald.test/u/tok123", "https://evil.test/u/tok123", 1)
		}, false},
		{"List-Unsubscribe added", func(m string) string {
			return "List-Unsubscribe: <https://evil.test/u>\r\n" + m
		}, false},
		{"List-Unsubscribe removed", func(m string) string {
			return strings.Replace(m, "List-Unsubscribe: <https://herald.test/u/tok123>\r\n", "", 1)
		}, false},
		{"List-Unsubscribe-Post changed", func(m string) string {
			return strings.Replace(m, "List-Unsubscribe=One-Click", "List-Unsubscribe=Two-Clicks", 1)
		}, false},
		{"Reply-To added", func(m string) string { return "Reply-To: thief@evil.test\r\n" + m }, false},
		{"Feedback-ID changed", func(m string) string { return strings.Replace(m, "job1:", "job2:", 1) }, false},
		{"body changed", func(m string) string { return strings.Replace(m, "Hello Ann", "Hello Bob", 1) }, false},
	}
	for _, key := range []string{"rsa-2048", "rsa-2048-pkcs1", "ed25519"} {
		s := newSigner(t, key)
		signed, err := s.Sign(email(body))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(signed, []byte("DKIM-Signature: ")) || !bytes.HasSuffix(signed, email(body)) {
			t.Fatalf("%s: the signature is not a header field in front of the message:\n%s", key, signed)
		}
		sig := string(signed[:len(signed)-len(email(body))])
		algo := map[bool]string{true: "a=ed25519-sha256", false: "a=rsa-sha256"}[key == "ed25519"]
		for _, want := range []string{algo, "c=relaxed/relaxed", "d=shop.example", "s=herald"} {
			if !strings.Contains(sig, want) {
				t.Errorf("%s: signature lacks %s:\n%s", key, want, sig)
			}
		}
		for _, tc := range tamper {
			err := verify(t, s, []byte(tc.edit(string(signed))))
			if tc.valid && err != nil {
				t.Errorf("%s, %s: %v", key, tc.name, err)
			}
			if !tc.valid && err == nil {
				t.Errorf("%s, %s: the signature still verifies", key, tc.name)
			}
		}
	}
}

func TestSignNormalizesLineEnds(t *testing.T) {
	s := newSigner(t, "ed25519")
	bare := bytes.ReplaceAll(email("line one\nline two\rline three\r\n"), []byte("\r\n"), []byte("\n"))
	signed, err := s.Sign(bare)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(signed, []byte("\n")) != bytes.Count(signed, []byte("\r\n")) {
		t.Errorf("signed message has bare line ends: %q", signed)
	}
	if err := verify(t, s, signed); err != nil {
		t.Errorf("verify: %v", err)
	}
}

func TestKeys(t *testing.T) {
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(ek)
	tests := []struct {
		name string
		cfg  dkimsign.Config
	}{
		{"no key", dkimsign.Config{Domain: "d", Selector: "s"}},
		{"not PEM", dkimsign.Config{Domain: "d", Selector: "s", KeyPEM: []byte("secret")}},
		{"ECDSA", dkimsign.Config{Domain: "d", Selector: "s", KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}},
		{"public key", dkimsign.Config{Domain: "d", Selector: "s", KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}},
		{"no domain", dkimsign.Config{Selector: "s", KeyPEM: testKeys(t)["ed25519"]}},
		{"no From", dkimsign.Config{Domain: "d", Selector: "s", KeyPEM: testKeys(t)["ed25519"], Headers: []string{"To"}}},
	}
	for _, tc := range tests {
		if _, err := dkimsign.New(tc.cfg); err == nil {
			t.Errorf("%s: New accepted it", tc.name)
		}
	}
}

// recorder is a Sender that keeps what it was given.
type recorder struct {
	got []*provider.Message
}

func (r *recorder) Name() string     { return "recorder" }
func (r *recorder) Idempotent() bool { return true }
func (r *recorder) Send(_ context.Context, msgs []*provider.Message) []provider.Result {
	r.got = append(r.got, msgs...)
	out := make([]provider.Result, len(msgs))
	for i, m := range msgs {
		out[i] = provider.Result{Outcome: provider.Sent, Reason: m.Key}
	}
	return out
}

func TestWrapSignsEveryMessage(t *testing.T) {
	s := newSigner(t, "ed25519")
	rec := &recorder{}
	sender := s.Wrap(rec)
	if sender.Name() != "recorder" || !sender.Idempotent() {
		t.Errorf("Wrap hides the sender's name or idempotence")
	}
	msgs := []*provider.Message{
		{Key: "k1", To: "a@example.com", Body: email("one\r\n")},
		{Key: "k2", To: "b@example.com", Body: []byte("From: x@shop.example\r\nno header end")},
		{Key: "k3", To: "c@example.com", Body: email("three\r\n")},
	}
	res := sender.Send(context.Background(), msgs)
	if res[0].Outcome != provider.Sent || res[0].Reason != "k1" || res[2].Outcome != provider.Sent || res[2].Reason != "k3" {
		t.Errorf("results %+v: the signed messages' results are misplaced", res)
	}
	if res[1].Outcome != provider.Failed {
		t.Errorf("an unsignable message: %+v, want failed", res[1])
	}
	if len(rec.got) != 2 {
		t.Fatalf("the sender got %d messages, want 2", len(rec.got))
	}
	for _, m := range rec.got {
		if err := verify(t, s, m.Body); err != nil {
			t.Errorf("%s: %v", m.Key, err)
		}
	}
	if bytes.HasPrefix(msgs[0].Body, []byte("DKIM")) {
		t.Error("Wrap changed the caller's message")
	}
}

// BenchmarkSign measures signing an 8 KiB message: the key operation,
// body hash and header canonicalization, and the copy that puts the
// signature in front. op=key is the key operation alone, on a SHA-256
// digest; the difference is go-msgauth's canonicalization and hashing.
//
//	go test -run '^$' -bench Sign ./dispatch/internal/dkimsign
func BenchmarkSign(b *testing.B) {
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusm=\r\n", 8<<10/74)
	msg := email(body)
	digest := sha256.Sum256(msg)
	for _, key := range []string{"rsa-2048", "ed25519"} {
		b.Run("op=key/key="+key, func(b *testing.B) {
			k, err := dkimsign.ParseKey(testKeys(b)[key])
			if err != nil {
				b.Fatal(err)
			}
			hash := crypto.SHA256
			if key == "ed25519" {
				hash = crypto.Hash(0) // Ed25519 signs the message itself
			}
			for b.Loop() {
				if _, err := k.Sign(rand.Reader, digest[:], hash); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/msg")
		})
		b.Run("op=sign/key="+key, func(b *testing.B) {
			s := newSigner(b, key)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(msg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/msg")
		})
	}
}

// TestSignedMailVerifiesAtTheReceiver sends signed mail through the SMTP
// pool to a mail catcher and verifies what it stored: line-end repair and
// dot-stuffing on the way must not break the signature.
func TestSignedMailVerifiesAtTheReceiver(t *testing.T) {
	mc, err := mailcatch.Start(t.Context(), mailcatch.Options{Maildir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	pool := smtpout.NewPool(smtpout.Config{Addr: mc.SMTPAddr(), TLSMode: smtpout.NoTLS, Conns: 2, Timeout: 5 * time.Second})
	defer pool.Close()
	s := newSigner(t, "rsa-2048")
	bodies := []string{"plain\r\n", ".leading dot\r\n..two\r\n.\r\n", "bare\nline ends\rhere", "no final line end"}
	var msgs []*provider.Message
	for i, b := range bodies {
		body := bytes.Replace(email(b), []byte("0123456789abcdef@"), fmt.Appendf(nil, "%016d@", i), 1)
		msgs = append(msgs, &provider.Message{Key: fmt.Sprint(i), From: "bounce@shop.example", To: "ann@example.com", Body: body})
	}
	for i, r := range s.Wrap(pool).Send(context.Background(), msgs) {
		if r.Outcome != provider.Sent {
			t.Fatalf("message %d: %+v", i, r)
		}
	}
	stored := mc.Messages()
	if len(stored) != len(bodies) {
		t.Fatalf("%d messages stored", len(stored))
	}
	for _, m := range stored {
		raw, err := os.ReadFile(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		if err := verify(t, s, raw); err != nil {
			t.Errorf("%s: %v", m.MessageID, err)
		}
	}
}

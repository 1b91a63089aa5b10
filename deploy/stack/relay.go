package stack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"herald/devtools/mailcatch"
)

// The local mail catcher is a submission relay as a provider's is: it
// requires STARTTLS, with a certificate from a CA made for the run, and
// AUTH, with credentials made for the run; dispatch reaches it with the
// flags it would use in production. So the demo and the end-to-end tests
// send over the path that ships, TLS and AUTH included.
const (
	// RelayUsername is the user name dispatch authenticates as.
	RelayUsername = "herald-dispatch"
	// ReturnDomain is the domain of dispatch's VERP envelope senders.
	ReturnDomain = "bounces.herald.test"
	// relayCAFile and relayPasswordFile are under the stack's Dir.
	relayCAFile       = "smtp-ca.pem"
	relayPasswordFile = "smtp-password"
)

// relay is what the local relay and dispatch share: the server's TLS
// settings, the credentials, and the secret that signs VERP tokens.
type relay struct {
	tls        *tls.Config
	creds      mailcatch.Credentials
	verpSecret string
	caFile     string
	pwFile     string
}

// newRelay makes a CA and a certificate for 127.0.0.1 signed by it, a
// password and a VERP secret, and writes the CA certificate and the
// password where dispatch reads them, the password readable by its owner
// only.
func newRelay(dir string) (*relay, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make relay CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Herald local relay CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("make relay CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse relay CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make relay key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "mail.herald.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("make relay certificate: %w", err)
	}
	r := &relay{
		tls:        &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, caDER}, PrivateKey: key}}},
		creds:      mailcatch.Credentials{Username: RelayUsername, Password: randomHex(16)},
		verpSecret: randomHex(32),
		caFile:     filepath.Join(dir, relayCAFile),
		pwFile:     filepath.Join(dir, relayPasswordFile),
	}
	if err := os.WriteFile(r.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return nil, fmt.Errorf("write relay CA: %w", err)
	}
	if err := os.WriteFile(r.pwFile, []byte(r.creds.Password+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write relay password: %w", err)
	}
	return r, nil
}

// env is dispatch's configuration for the relay at addr.
func (r *relay) env(addr string) []string {
	return []string{
		"HERALD_SMTP_ADDR=" + addr,
		"HERALD_SMTP_TLS=starttls",
		"HERALD_SMTP_CA_FILE=" + r.caFile,
		"HERALD_SMTP_USERNAME=" + r.creds.Username,
		"HERALD_SMTP_PASSWORD_FILE=" + r.pwFile,
		"HERALD_SMTP_RETURN_DOMAIN=" + ReturnDomain,
		"HERALD_SMTP_VERP_SECRET=" + r.verpSecret,
	}
}

// inboundEnv is ingest's configuration for receiving the bounces to
// dispatch's return paths at addr: the same domain and secret.
func (r *relay) inboundEnv(addr string) []string {
	return []string{
		"HERALD_FEEDBACK_SMTP_ADDR=" + addr,
		"HERALD_SMTP_RETURN_DOMAIN=" + ReturnDomain,
		"HERALD_SMTP_VERP_SECRET=" + r.verpSecret,
	}
}

// randomHex is n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Package feedbacktest stands in for the providers whose reports package
// feedback reads: an SNS that signs messages with a key of its own and
// serves its signing certificate and subscription confirmations over TLS
// at sns.us-east-1.amazonaws.com, and a SendGrid account's signing key.
// Only tests import it.
package feedbacktest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"herald/ingest/internal/feedback"
)

// The SNS endpoint the fake answers as, and a host that is not SNS but
// whose name the fake's TLS certificate also covers: a verifier that
// fetched from it would succeed, so a refusal proves the host rule.
const (
	SNSHost   = "sns.us-east-1.amazonaws.com"
	OtherHost = "sns-certificates.example.com"
	Topic     = "arn:aws:sns:us-east-1:123456789012:herald-ses-events"
)

// SNS is a fake SNS. Its Client trusts the fake's test CA and dials every
// host to the fake's loopback TLS server, so a verifier using it makes
// real HTTPS requests to real SNS host names.
type SNS struct {
	// Client is the HTTP client a verifier under test fetches with.
	Client *http.Client
	// CertURL is where the fake serves its signing certificate.
	CertURL string

	key *rsa.PrivateKey
	srv *httptest.Server

	mu        sync.Mutex
	requests  []string
	confirmed []string
}

// NewSNS starts a fake SNS that lives as long as t.
func NewSNS(t testing.TB) *SNS {
	t.Helper()
	now := time.Now()
	// The CA and TLS keys are ECDSA, quick to make; SNS signs with RSA.
	caKey := newECDSA(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Herald test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, pub any, names []string, usage x509.ExtKeyUsage) []byte {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "sns.amazonaws.com"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			DNSNames: names, ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	s := &SNS{key: newRSA(t), CertURL: "https://" + SNSHost + "/SimpleNotificationService-0000000000000000000000.pem"}
	signingPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issue(2, &s.key.PublicKey, nil, x509.ExtKeyUsageAny)})
	tlsKey := newECDSA(t)
	tlsDER := issue(3, &tlsKey.PublicKey, []string{SNSHost, "sns.cn-north-1.amazonaws.com.cn", OtherHost}, x509.ExtKeyUsageServerAuth)

	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Host+r.URL.Path)
		s.mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, ".pem"):
			w.Header().Set("Content-Type", "application/x-x509-ca-cert")
			_, _ = w.Write(signingPEM)
		case r.URL.Query().Get("Action") == "ConfirmSubscription":
			s.mu.Lock()
			s.confirmed = append(s.confirmed, r.URL.Query().Get("Token"))
			s.mu.Unlock()
			w.Header().Set("Content-Type", "text/xml")
			_, _ = w.Write([]byte(`<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><ConfirmSubscriptionResult><SubscriptionArn>` +
				r.URL.Query().Get("TopicArn") + `:0f8e5e4e</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>`))
		default:
			http.NotFound(w, r)
		}
	}))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{tlsDER}, PrivateKey: tlsKey}}}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	addr := s.srv.Listener.Addr().String()
	var d net.Dialer
	s.Client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
	return s
}

func newECDSA(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Requests lists host+path of every request the fake served.
func (s *SNS) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// Confirmed lists the tokens of the subscriptions confirmed so far.
func (s *SNS) Confirmed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.confirmed...)
}

// Notification returns a signed Notification of Topic carrying message,
// sent now.
func (s *SNS) Notification(messageID, message string) feedback.SNSMessage {
	m := feedback.SNSMessage{Type: feedback.SNSNotification, MessageID: messageID, TopicArn: Topic, Message: message,
		Timestamp:      time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		UnsubscribeURL: "https://" + SNSHost + "/?Action=Unsubscribe&SubscriptionArn=" + Topic + ":0f8e5e4e"}
	return s.Sign(m, 2)
}

// SubscriptionConfirmation returns a signed SubscriptionConfirmation of
// Topic with token.
func (s *SNS) SubscriptionConfirmation(messageID, token string) feedback.SNSMessage {
	m := feedback.SNSMessage{Type: feedback.SNSSubscriptionConfirmation, MessageID: messageID, TopicArn: Topic, Token: token,
		Message:      "You have chosen to subscribe to the topic " + Topic + ".\nTo confirm the subscription, visit the SubscribeURL included in this message.",
		SubscribeURL: "https://" + SNSHost + "/?Action=ConfirmSubscription&TopicArn=" + Topic + "&Token=" + token,
		Timestamp:    time.Now().UTC().Format("2006-01-02T15:04:05.000Z")}
	return s.Sign(m, 1)
}

// Sign signs m with the fake's key under SignatureVersion version (1:
// SHA1withRSA, 2: SHA256withRSA) and points it at the fake's certificate.
func (s *SNS) Sign(m feedback.SNSMessage, version int) feedback.SNSMessage {
	return SignWith(m, version, s.key, s.CertURL)
}

// SignWith signs m with key and names certURL as its certificate. The
// string to sign is built here from the SNS documentation, apart from the
// verifier's, so that the two check each other.
func SignWith(m feedback.SNSMessage, version int, key *rsa.PrivateKey, certURL string) feedback.SNSMessage {
	var b strings.Builder
	add := func(name, value string) { b.WriteString(name + "\n" + value + "\n") }
	add("Message", m.Message)
	add("MessageId", m.MessageID)
	if m.Type == feedback.SNSNotification {
		if m.Subject != nil {
			add("Subject", *m.Subject)
		}
	} else {
		add("SubscribeURL", m.SubscribeURL)
	}
	add("Timestamp", m.Timestamp)
	if m.Type != feedback.SNSNotification {
		add("Token", m.Token)
	}
	add("TopicArn", m.TopicArn)
	add("Type", m.Type)
	var digest []byte
	alg := crypto.SHA256
	if version == 1 {
		sum := sha1.Sum([]byte(b.String()))
		digest, alg = sum[:], crypto.SHA1
	} else {
		sum := sha256.Sum256([]byte(b.String()))
		digest = sum[:]
	}
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, alg, digest)
	if err != nil {
		panic(err)
	}
	m.SignatureVersion = strconv.Itoa(version)
	m.Signature = base64.StdEncoding.EncodeToString(sig)
	m.SigningCertURL = certURL
	return m
}

// Body is m as SNS posts it.
func Body(m feedback.SNSMessage) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// SendGrid holds a SendGrid account's Event Webhook signing key.
type SendGrid struct {
	// PublicKey is the verification key as SendGrid shows it: base64 of
	// its DER SubjectPublicKeyInfo.
	PublicKey string
	key       *ecdsa.PrivateKey
}

// NewSendGrid makes a signing key.
func NewSendGrid(t testing.TB) *SendGrid {
	t.Helper()
	k := newECDSA(t)
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &SendGrid{PublicKey: base64.StdEncoding.EncodeToString(der), key: k}
}

// Sign returns the signature and timestamp headers' values for body sent
// at at.
func (s *SendGrid) Sign(body []byte, at time.Time) (signature, timestamp string) {
	timestamp = strconv.FormatInt(at.Unix(), 10)
	sum := sha256.Sum256(append([]byte(timestamp), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, sum[:])
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(sig), timestamp
}

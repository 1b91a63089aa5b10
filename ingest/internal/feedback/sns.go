package feedback

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// SNS message types.
const (
	SNSNotification             = "Notification"
	SNSSubscriptionConfirmation = "SubscriptionConfirmation"
	SNSUnsubscribeConfirmation  = "UnsubscribeConfirmation"
)

// SNSMessage is one message SNS posts to an HTTPS subscription.
type SNSMessage struct {
	Type      string
	MessageID string `json:"MessageId"`
	TopicArn  string
	// Subject is nil when the message has none: a present but empty
	// subject is signed, an absent one is not.
	Subject          *string
	Message          string
	Timestamp        string
	SignatureVersion string
	Signature        string
	SigningCertURL   string
	// SubscribeURL and Token come with the two confirmation types.
	SubscribeURL   string
	Token          string
	UnsubscribeURL string
}

// StringToSign is the text SNS signs for m, as the SNS documentation
// defines it: each field's name and value on lines of their own, in byte
// order of the names, a Notification's Subject only when it has one.
func (m SNSMessage) StringToSign() (string, error) {
	type field struct{ name, value string }
	var fields []field
	switch m.Type {
	case SNSNotification:
		fields = []field{{"Message", m.Message}, {"MessageId", m.MessageID}}
		if m.Subject != nil {
			fields = append(fields, field{"Subject", *m.Subject})
		}
		fields = append(fields, field{"Timestamp", m.Timestamp}, field{"TopicArn", m.TopicArn}, field{"Type", m.Type})
	case SNSSubscriptionConfirmation, SNSUnsubscribeConfirmation:
		fields = []field{{"Message", m.Message}, {"MessageId", m.MessageID}, {"SubscribeURL", m.SubscribeURL},
			{"Timestamp", m.Timestamp}, {"Token", m.Token}, {"TopicArn", m.TopicArn}, {"Type", m.Type}}
	default:
		return "", fmt.Errorf("%w: SNS message type %q", ErrMalformed, m.Type)
	}
	var b strings.Builder
	for _, f := range fields {
		b.WriteString(f.name)
		b.WriteByte('\n')
		b.WriteString(f.value)
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// snsRegion is what an AWS region looks like (us-east-1, us-gov-west-1,
// cn-northwest-1). A looser "anything between sns. and .amazonaws.com"
// would also take sns.s3.amazonaws.com and sns.s3-website-us-east-1…,
// which are S3 buckets named sns, whose content anyone may own.
var snsRegion = regexp.MustCompile(`^[a-z]{2}(-gov)?-[a-z]+-[0-9]{1,2}$`)

// snsHost reports whether host is an SNS endpoint:
// sns.<region>.amazonaws.com, or .amazonaws.com.cn in China.
func snsHost(host string) bool {
	rest, ok := strings.CutPrefix(host, "sns.")
	if !ok {
		return false
	}
	region, ok := strings.CutSuffix(rest, ".amazonaws.com")
	if !ok {
		region, ok = strings.CutSuffix(rest, ".amazonaws.com.cn")
	}
	return ok && snsRegion.MatchString(region)
}

// snsURL parses raw and refuses anything but an https URL on an SNS host,
// on the default port and without user info, so that neither a
// certificate nor a confirmation is ever fetched from anywhere else.
func snsURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Port() != "" || !snsHost(u.Host) {
		return nil, fmt.Errorf("%q is not an https URL on an SNS host (sns.<region>.amazonaws.com)", raw)
	}
	return u, nil
}

// SNSConfig configures an SNS verifier.
type SNSConfig struct {
	// Topics are the ARNs of the topics Herald subscribed; a message of
	// any other topic is refused even when correctly signed, since anyone
	// can have SNS sign messages of a topic of their own.
	Topics []string
	// Client fetches signing certificates and confirms subscriptions. Its
	// transport's roots decide which TLS servers are SNS, so tests can
	// stand one in without loosening the host rule.
	Client *http.Client
	// MaxAge is how old a message may be, from its Timestamp; it is longer
	// than SNS goes on retrying a delivery. A replay within it is a
	// duplicate of its event id; older ones are refused.
	MaxAge time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// DefaultSNSMaxAge outlasts SNS's retries of an HTTPS delivery, which
// stop within an hour even under the most patient delivery policy.
const DefaultSNSMaxAge = 24 * time.Hour

// maxCertBytes bounds a signing certificate download.
const maxCertBytes = 64 << 10

// maxCachedCerts bounds the certificate cache: SNS uses one certificate
// per region at a time, and rotates it rarely.
const maxCachedCerts = 32

// SNS verifies messages of an SNS HTTPS subscription.
type SNS struct {
	cfg    SNSConfig
	now    func() time.Time
	group  singleflight.Group
	mu     sync.Mutex
	certs  map[string]*x509.Certificate
	fetchs int // certificates fetched, for tests
}

// NewSNS returns a verifier; it refuses a configuration with no topic.
func NewSNS(cfg SNSConfig) (*SNS, error) {
	if len(cfg.Topics) == 0 {
		return nil, errors.New("SNS feedback needs at least one topic ARN")
	}
	for _, t := range cfg.Topics {
		if !strings.HasPrefix(t, "arn:aws") || strings.Count(t, ":") != 5 {
			return nil, fmt.Errorf("SNS topic %q is not a topic ARN (arn:aws:sns:<region>:<account>:<name>)", t)
		}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultSNSMaxAge
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &SNS{cfg: cfg, now: now, certs: map[string]*x509.Certificate{}}, nil
}

// clockSkew is how far in the future a message's Timestamp may be.
const clockSkew = 15 * time.Minute

// Verify parses body as an SNS message and returns it if SNS signed it
// for one of the configured topics. Every message is checked, whatever
// its type: the certificate URL must be an SNS host, the signature must
// be the certificate's over the message's string to sign, and the message
// must be younger than MaxAge.
func (s *SNS) Verify(ctx context.Context, body []byte) (SNSMessage, error) {
	var m SNSMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return SNSMessage{}, fmt.Errorf("%w: not an SNS message: %v", ErrMalformed, err)
	}
	toSign, err := m.StringToSign()
	if err != nil {
		return SNSMessage{}, err
	}
	if m.MessageID == "" || m.TopicArn == "" {
		return SNSMessage{}, fmt.Errorf("%w: SNS message without MessageId or TopicArn", ErrMalformed)
	}
	if m.Type != SNSNotification && m.SubscribeURL == "" {
		return SNSMessage{}, fmt.Errorf("%w: %s without SubscribeURL", ErrMalformed, m.Type)
	}
	if m.Signature == "" || m.SigningCertURL == "" {
		return SNSMessage{}, fmt.Errorf("%w: unsigned SNS message", ErrSignature)
	}
	var h hash.Hash
	var alg crypto.Hash
	switch m.SignatureVersion {
	case "1":
		h, alg = sha1.New(), crypto.SHA1
	case "2":
		h, alg = sha256.New(), crypto.SHA256
	default:
		return SNSMessage{}, fmt.Errorf("%w: SNS SignatureVersion %q (want 1 or 2)", ErrSignature, m.SignatureVersion)
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil {
		return SNSMessage{}, fmt.Errorf("%w: SNS Signature is not base64", ErrSignature)
	}
	// The topic is checked before anything is fetched: a message of a
	// foreign topic costs no request.
	if !slices.Contains(s.cfg.Topics, m.TopicArn) {
		return SNSMessage{}, fmt.Errorf("%w: %s", ErrTopic, m.TopicArn)
	}
	certURL, err := snsURL(m.SigningCertURL)
	if err != nil || !strings.HasSuffix(certURL.Path, ".pem") {
		return SNSMessage{}, fmt.Errorf("%w: SigningCertURL %q is not a certificate on an SNS host", ErrSignature, m.SigningCertURL)
	}
	now := s.now()
	at, err := time.Parse(time.RFC3339Nano, m.Timestamp)
	if err != nil {
		return SNSMessage{}, fmt.Errorf("%w: SNS Timestamp %q", ErrMalformed, m.Timestamp)
	}
	if age := now.Sub(at); age > s.cfg.MaxAge || age < -clockSkew {
		return SNSMessage{}, fmt.Errorf("%w: SNS message of %s is outside the %s window", ErrSignature, m.Timestamp, s.cfg.MaxAge)
	}
	cert, err := s.cert(ctx, certURL.String())
	if err != nil {
		return SNSMessage{}, err
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return SNSMessage{}, fmt.Errorf("%w: signing certificate valid %s to %s", ErrSignature, cert.NotBefore, cert.NotAfter)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return SNSMessage{}, fmt.Errorf("%w: signing certificate has no RSA key", ErrSignature)
	}
	h.Write([]byte(toSign))
	if err := rsa.VerifyPKCS1v15(pub, alg, h.Sum(nil), sig); err != nil {
		return SNSMessage{}, fmt.Errorf("%w: SNS signature does not match", ErrSignature)
	}
	return m, nil
}

// cert returns the certificate at u, from the cache or fetched once
// however many requests ask for it at the same time.
func (s *SNS) cert(ctx context.Context, u string) (*x509.Certificate, error) {
	s.mu.Lock()
	c, ok := s.certs[u]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	v, err, _ := s.group.Do(u, func() (any, error) {
		c, err := s.fetchCert(ctx, u)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.fetchs++
		if len(s.certs) >= maxCachedCerts {
			clear(s.certs)
		}
		s.certs[u] = c
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*x509.Certificate), nil
}

func (s *SNS) fetchCert(ctx context.Context, u string) (*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch SNS signing certificate: %w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch SNS signing certificate %s: %w: HTTP %d", u, ErrUnavailable, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxCertBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch SNS signing certificate: %w: %v", ErrUnavailable, err)
	}
	block, _ := pem.Decode(b)
	if len(b) > maxCertBytes || block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrSignature, u)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSignature, u, err)
	}
	return c, nil
}

// Fetched reports how many certificates were downloaded so far.
func (s *SNS) Fetched() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetchs
}

// Confirm confirms the subscription of a verified SubscriptionConfirmation
// by visiting its SubscribeURL, which must be on an SNS host too.
func (s *SNS) Confirm(ctx context.Context, m SNSMessage) error {
	if m.Type != SNSSubscriptionConfirmation {
		return fmt.Errorf("%w: %s is not a SubscriptionConfirmation", ErrMalformed, m.Type)
	}
	u, err := snsURL(m.SubscribeURL)
	if err != nil {
		return fmt.Errorf("%w: SubscribeURL: %v", ErrMalformed, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("confirm SNS subscription: %w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("confirm SNS subscription to %s: %w: HTTP %d", m.TopicArn, ErrUnavailable, resp.StatusCode)
	}
	return nil
}

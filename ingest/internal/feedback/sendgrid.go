package feedback

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"herald/ingest/internal/store"
)

// The headers of a signed SendGrid Event Webhook request.
const (
	SendGridSignatureHeader = "X-Twilio-Email-Event-Webhook-Signature"
	SendGridTimestampHeader = "X-Twilio-Email-Event-Webhook-Timestamp"
)

// DefaultSendGridWindow is how far a signed request's timestamp may be
// from now. SendGrid signs each attempt afresh, so a retry hours later
// still has a fresh timestamp; an old one is a replay.
const DefaultSendGridWindow = 5 * time.Minute

// SendGrid verifies Event Webhook requests with the account's
// verification key.
type SendGrid struct {
	key    *ecdsa.PublicKey
	window time.Duration
	now    func() time.Time
}

// NewSendGrid returns a verifier for publicKey, the verification key as
// SendGrid's settings show it (base64 of a DER SubjectPublicKeyInfo, with
// or without PEM armour). window 0 is DefaultSendGridWindow; now nil is
// time.Now.
func NewSendGrid(publicKey string, window time.Duration, now func() time.Time) (*SendGrid, error) {
	key, err := ParseSendGridKey(publicKey)
	if err != nil {
		return nil, err
	}
	if window <= 0 {
		window = DefaultSendGridWindow
	}
	if now == nil {
		now = time.Now
	}
	return &SendGrid{key: key, window: window, now: now}, nil
}

// ParseSendGridKey reads an ECDSA P-256 public key from base64 DER or PEM.
func ParseSendGridKey(s string) (*ecdsa.PublicKey, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if block, _ := pem.Decode([]byte(s)); block != nil {
		der = block.Bytes
	} else {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, errors.New("SendGrid verification key is neither PEM nor base64")
		}
		der = b
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse SendGrid verification key: %w", err)
	}
	ec, ok := k.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("SendGrid verification key is not an ECDSA P-256 key")
	}
	return ec, nil
}

// Verify checks the signature SendGrid made over timestamp and the raw
// body: ECDSA P-256 over SHA-256 of timestamp||body, base64 ASN.1.
func (v *SendGrid) Verify(signature, timestamp string, body []byte) error {
	if signature == "" || timestamp == "" {
		return fmt.Errorf("%w: unsigned: want %s and %s", ErrSignature, SendGridSignatureHeader, SendGridTimestampHeader)
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not unix seconds", ErrSignature, SendGridTimestampHeader, timestamp)
	}
	if d := v.now().Sub(time.Unix(sec, 0)); d > v.window || d < -v.window {
		return fmt.Errorf("%w: signed at %s, outside the %s window", ErrSignature, time.Unix(sec, 0).UTC().Format(time.RFC3339), v.window)
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return fmt.Errorf("%w: %s is not base64", ErrSignature, SendGridSignatureHeader)
	}
	h := sha256.New()
	h.Write([]byte(timestamp))
	h.Write(body)
	if !ecdsa.VerifyASN1(v.key, h.Sum(nil), sig) {
		return fmt.Errorf("%w: SendGrid signature does not match", ErrSignature)
	}
	return nil
}

// sendGridEvent is one event of a webhook request. Custom args are
// top-level fields of the event; Herald's two (event.TagTenant and
// event.TagDelivery, which the tests pin these names to) carry the
// delivery key.
type sendGridEvent struct {
	Event     string `json:"event"`
	EventID   string `json:"sg_event_id"`
	Type      string `json:"type"`
	Reason    string `json:"reason"`
	Tenant    string `json:"herald_tenant"`
	Delivery  string `json:"herald_delivery"`
	MessageID string `json:"sg_message_id"`
}

// ParseSendGrid reads a webhook request's body, a JSON array of events.
// delivered is Delivered; bounce is Bounced, or SoftBounce when its type
// is blocked (the receiver refused this message, not the address);
// deferred is SoftBounce; spamreport is Complained. A dropped message was
// never sent: it counts as Bounced when SendGrid dropped it for a bounced
// address and Complained for a spam-reporting one — both are what its own
// suppression lists already know, and Herald learns them too — and is
// ignored for any other reason (unsubscribed, invalid, over size). Other
// events (processed, open, click…) are ignored. The event id is
// sg_event_id, the same on each retry.
func ParseSendGrid(body []byte) (Batch, error) {
	var events []sendGridEvent
	if err := json.Unmarshal(body, &events); err != nil {
		return Batch{}, fmt.Errorf("%w: SendGrid events: %v", ErrMalformed, err)
	}
	var b Batch
	for _, e := range events {
		var kind store.FeedbackKind
		switch e.Event {
		case "delivered":
			kind = store.Delivered
		case "bounce":
			kind = store.Bounced
			if e.Type == "blocked" {
				kind = store.SoftBounce
			}
		case "deferred":
			kind = store.SoftBounce
		case "spamreport":
			kind = store.Complained
		case "dropped":
			switch strings.ToLower(e.Reason) {
			case "bounced address":
				kind = store.Bounced
			case "spam reporting address":
				kind = store.Complained
			}
		}
		if kind == "" {
			b.Ignored++
			continue
		}
		if e.EventID == "" {
			b.Unkeyed = append(b.Unkeyed, Unkeyed{Reason: fmt.Sprintf("%s event of %q without sg_event_id", e.Event, e.MessageID)})
			continue
		}
		key, err := keyFromTags(e.Tenant, e.Delivery)
		b.add(ProviderSendGrid, e.EventID, key, err, kind)
	}
	return b, nil
}

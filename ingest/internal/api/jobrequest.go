package api

import (
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"herald/ingest/internal/store"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

type jobRequest struct {
	Channel  string `json:"channel"`
	Template struct {
		ID      string `json:"id"`
		Version int    `json:"version,omitempty"`
	} `json:"template"`
	Audience struct {
		AllSubscribed bool     `json:"all_subscribed,omitempty"`
		CustomerIDs   []string `json:"customer_ids,omitempty"`
		Segment       *Segment `json:"segment,omitempty"`
	} `json:"audience"`
	// Strategy is gone: picking.strategies replaced it. It is decoded so
	// that a request still sending it is told so (createJob refuses any
	// value), and it stays in the request hash (see requestHash).
	Strategy json.RawMessage `json:"strategy,omitempty"`
	// Picking chooses the recommendation strategies, their fallbacks and
	// the business rules (the eventv1.Picking message in its JSON form).
	Picking json.RawMessage `json:"picking,omitempty"`
	// QuietHours keeps the job out of each recipient's local night.
	QuietHours *quietHours `json:"quiet_hours,omitempty"`
	Products   *int        `json:"products,omitempty"`
	Campaign   string      `json:"campaign,omitempty"`
	SendAt     *time.Time  `json:"send_at,omitempty"`
	Deadline   *time.Time  `json:"deadline,omitempty"`
}

// Defaults and bounds of a job request.
const (
	defaultProducts = 6
	maxProducts     = 24
	minLead         = time.Minute
	// sendAtSkew is how far in the past a send_at may be (a client's clock
	// running behind); it then means "now".
	sendAtSkew = time.Minute
)

// strategyRemoved answers a request that still names a strategy.
const strategyRemoved = `strategy is no longer a field of a job: leave it out for the default ` +
	`(the customer's ranked recommendations topped up with best sellers, as "personalized" was), ` +
	`or choose strategies and fallbacks with picking.strategies`

var idempotencyKeyPattern = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

// parseJob decides everything about a job request that needs no database:
// it checks every field against its rule and limits, as of now, and
// returns the job to store, or every problem found. It reads and writes
// nothing, so each rule is tested beside it.
//
// The job it returns lacks what the request body does not say: the
// idempotency key and trace context (headers), and the deadline when the
// request names none, which is the tenant's default after j.Start().
func parseJob(req jobRequest, now time.Time, limits Limits) (store.NewJob, fieldErrors) {
	now = now.UTC()
	var f fieldErrors
	if _, err := event.ParseChannel(req.Channel); err != nil {
		f.add("channel", "must be one of %s", channelList(event.Channels))
	}
	if !templateIDPattern.MatchString(req.Template.ID) {
		f.add("template.id", "must name a template")
	}
	checkVersion(&f, "template.version", req.Template.Version)
	ids := req.Audience.CustomerIDs
	kinds := 0
	for _, set := range []bool{req.Audience.AllSubscribed, len(ids) > 0, req.Audience.Segment != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		f.add("audience", "set exactly one of all_subscribed: true, customer_ids or segment")
	}
	if len(ids) > limits.MaxAudienceIDs {
		f.add("audience.customer_ids", "more than %d ids; use a segment or all_subscribed", limits.MaxAudienceIDs)
	}
	for i, id := range ids {
		if !idPattern.MatchString(id) {
			f.add(fmt.Sprintf("audience.customer_ids[%d]", i), "is not a valid customer id")
			break
		}
	}
	var segment []byte
	var segmentPath string
	if req.Audience.Segment != nil {
		var err error
		if segmentPath, err = req.Audience.Segment.Compile(); err != nil {
			f.add("audience.segment", "%v", err)
		}
		segment, _ = json.Marshal(req.Audience.Segment)
	}
	products := defaultProducts
	if req.Products != nil {
		products = *req.Products
		if products < 0 || products > maxProducts {
			f.add("products", "must be between 0 and %d", maxProducts)
		}
	}
	var quiet []byte
	if req.QuietHours != nil {
		q, err := req.QuietHours.proto()
		if err != nil {
			f.add("quiet_hours", "%v", err)
		} else {
			quiet, _ = protojson.Marshal(q)
			// The request hash covers the mode the job gets, so leaving
			// out the default is the same request as spelling it.
			understood := *req.QuietHours
			understood.Mode = q.Mode
			req.QuietHours = &understood
		}
	}
	var picking []byte
	if len(req.Picking) > 0 && string(req.Picking) != "null" {
		p := &eventv1.Picking{}
		if err := protojson.Unmarshal(req.Picking, p); err != nil {
			f.add("picking", "%v", err)
		} else if err := event.ValidatePicking(p, products); err != nil {
			f.add("picking", "%v", err)
		} else {
			picking, _ = protojson.Marshal(p)
		}
	}
	switch {
	case len(req.Campaign) > 100:
		f.add("campaign", "longer than 100 bytes")
	case strings.ContainsAny(req.Campaign, "\r\n"):
		f.add("campaign", "must not contain CR or LF: it becomes part of a message header")
	case strings.ContainsFunc(req.Campaign, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		f.add("campaign", "must not contain control characters")
	}
	start := now
	if req.SendAt != nil {
		switch s := req.SendAt.UTC(); {
		case s.Before(now.Add(-sendAtSkew)):
			f.add("send_at", "is in the past")
		case s.After(now.Add(limits.MaxSchedule)):
			f.add("send_at", "is more than %s ahead", limits.MaxSchedule)
		case s.After(now):
			start = s
		}
	}
	var deadline time.Time
	if req.Deadline != nil {
		deadline = req.Deadline.UTC()
		switch d := deadline.Sub(start); {
		case req.SendAt != nil && !req.Deadline.After(*req.SendAt):
			f.add("deadline", "is not after send_at")
		case d < minLead:
			f.add("deadline", "must be at least %s after the job starts", minLead)
		case d > limits.MaxDeadline:
			f.add("deadline", "must be within %s of the job's start", limits.MaxDeadline)
		}
	}
	if len(f) > 0 {
		return store.NewJob{}, f
	}
	hash, err := requestHash(req)
	if err != nil {
		// Cannot happen for a request strictjson decoded; said anyway.
		f.add("request", "%v", err)
		return store.NewJob{}, f
	}
	job := store.NewJob{
		RequestHash:     hash,
		Channel:         req.Channel,
		TemplateID:      req.Template.ID,
		TemplateVersion: req.Template.Version,
		Audience: store.Audience{AllSubscribed: req.Audience.AllSubscribed, CustomerIDs: sortedUnique(ids),
			Segment: segment, SegmentPath: segmentPath},
		ProductsPerMessage: products,
		Picking:            picking,
		QuietHours:         quiet,
		Campaign:           req.Campaign,
		SubmittedAt:        now,
		Deadline:           deadline,
	}
	if start.After(now) {
		job.SendAt = &start
	}
	return job, nil
}

// requestHash is what makes two requests with one Idempotency-Key the same
// request: a hash of the request as understood (its defaults filled in),
// so whitespace, key order or spelling out a default does not make a retry
// look like a different request. Its bytes must not change between
// releases, or a retry across an upgrade would be refused as a different
// request; a test pins them. So it still covers strategy "personalized",
// the one value every job had while strategy was a field.
func requestHash(req jobRequest) ([]byte, error) {
	req.Strategy = json.RawMessage(`"personalized"`)
	canonical, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode the request again: %w", err)
	}
	sum := sha256.Sum256(canonical)
	return sum[:], nil
}

// channelList names channels for a message: "email, onsite, ad".
func channelList(cs []event.Channel) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

func sortedUnique(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// quietHours is a daily window in each recipient's local time when the job
// sends them nothing: "hold" sends when it ends, "skip" not at all.
type quietHours struct {
	Start string `json:"start"`
	End   string `json:"end"`
	Mode  string `json:"mode,omitempty"`
}

// proto checks q and returns it as the wire contract carries it, the mode
// defaulting to "hold".
func (q *quietHours) proto() (*eventv1.QuietHours, error) {
	minute := func(field, v string) (int32, error) {
		t, err := time.Parse("15:04", v)
		if err != nil {
			return 0, fmt.Errorf("%s must be a local time like \"21:00\"", field)
		}
		return int32(t.Hour()*60 + t.Minute()), nil
	}
	start, err := minute("start", q.Start)
	if err != nil {
		return nil, err
	}
	end, err := minute("end", q.End)
	if err != nil {
		return nil, err
	}
	if start == end {
		return nil, errors.New("start and end must differ")
	}
	mode := cmp.Or(q.Mode, "hold")
	if mode != "hold" && mode != "skip" {
		return nil, errors.New(`mode must be "hold" or "skip"`)
	}
	return &eventv1.QuietHours{StartMinute: start, EndMinute: end, Mode: mode}, nil
}

package api

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"herald/ingest/internal/store"
	"herald/ingest/internal/strictjson"
	eventv1 "herald/shared/event/v1"
)

// parseNow is the clock of the parseJob tests.
var parseNow = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

// at is parseNow moved by d, as a JSON string.
func at(d time.Duration) string { return `"` + parseNow.Add(d).Format(time.RFC3339) + `"` }

// jobBody is a valid job request with extra members appended.
func jobBody(extra string) string {
	return `{"channel":"email","template":{"id":"bf"},"audience":{"all_subscribed":true}` + extra + `}`
}

func decodeJob(t *testing.T, body string) jobRequest {
	t.Helper()
	var req jobRequest
	if err := strictjson.Decode([]byte(body), &req); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return req
}

// TestParseJobRefuses names every rule of a job request: each broken rule
// is reported on its field with its message, all of them at once, and no
// job comes back.
func TestParseJobRefuses(t *testing.T) {
	few := DefaultLimits
	few.MaxAudienceIDs = 2
	tests := []struct {
		name   string
		body   string
		limits *Limits // DefaultLimits if nil
		// want lists the problems in order; a message matches if the
		// problem's message contains it (some come from other packages).
		want fieldErrors
	}{
		{"unknown channel", `{"channel":"sms","template":{"id":"bf"},"audience":{"all_subscribed":true}}`, nil,
			fieldErrors{{"channel", "must be one of email, onsite, ad"}}},
		{"no channel", `{"template":{"id":"bf"},"audience":{"all_subscribed":true}}`, nil,
			fieldErrors{{"channel", "must be one of email, onsite, ad"}}},
		{"channel in another case", `{"channel":"Email","template":{"id":"bf"},"audience":{"all_subscribed":true}}`, nil,
			fieldErrors{{"channel", "must be one of email, onsite, ad"}}},
		{"no template", `{"channel":"email","audience":{"all_subscribed":true}}`, nil,
			fieldErrors{{"template.id", "must name a template"}}},
		{"template id with a slash", `{"channel":"email","template":{"id":"a/b"},"audience":{"all_subscribed":true}}`, nil,
			fieldErrors{{"template.id", "must name a template"}}},
		{"negative template version", `{"channel":"email","template":{"id":"bf","version":-1},"audience":{"all_subscribed":true}}`, nil,
			fieldErrors{{"template.version", "must be between 1 and 2147483647, or omitted for the latest"}}},
		{"template version beyond int4", `{"channel":"email","template":{"id":"bf","version":2147483648},"audience":{"all_subscribed":true}}`, nil,
			fieldErrors{{"template.version", "must be between 1 and 2147483647"}}},
		{"no audience", `{"channel":"email","template":{"id":"bf"},"audience":{}}`, nil,
			fieldErrors{{"audience", "set exactly one of all_subscribed: true, customer_ids or segment"}}},
		{"all_subscribed false is no audience", `{"channel":"email","template":{"id":"bf"},"audience":{"all_subscribed":false}}`, nil,
			fieldErrors{{"audience", "set exactly one of all_subscribed: true, customer_ids or segment"}}},
		{"two audiences", `{"channel":"email","template":{"id":"bf"},"audience":{"all_subscribed":true,"customer_ids":["c1"]}}`, nil,
			fieldErrors{{"audience", "set exactly one of all_subscribed: true, customer_ids or segment"}}},
		{"three audiences", `{"channel":"email","template":{"id":"bf"},"audience":{"all_subscribed":true,"customer_ids":["c1"],` +
			`"segment":{"attribute":"tier","op":"eq","value":"gold"}}}`, nil,
			fieldErrors{{"audience", "set exactly one of all_subscribed: true, customer_ids or segment"}}},
		{"more customer ids than the limit", `{"channel":"email","template":{"id":"bf"},"audience":{"customer_ids":["c1","c2","c3"]}}`, &few,
			fieldErrors{{"audience.customer_ids", "more than 2 ids; use a segment or all_subscribed"}}},
		{"invalid customer ids: the first is named", `{"channel":"email","template":{"id":"bf"},"audience":{"customer_ids":["c1","c 2","c/3"]}}`, nil,
			fieldErrors{{"audience.customer_ids[1]", "is not a valid customer id"}}},
		{"segment with a bad attribute", `{"channel":"email","template":{"id":"bf"},"audience":{"segment":{"attribute":"a') || true","op":"eq","value":1}}}`, nil,
			fieldErrors{{"audience.segment", "attribute"}}},
		{"segment with an unknown op", `{"channel":"email","template":{"id":"bf"},"audience":{"segment":{"attribute":"tier","op":"like","value":"g%"}}}`, nil,
			fieldErrors{{"audience.segment", "like"}}},
		{"negative products", jobBody(`,"products":-1`), nil,
			fieldErrors{{"products", "must be between 0 and 24"}}},
		{"too many products", jobBody(`,"products":25`), nil,
			fieldErrors{{"products", "must be between 0 and 24"}}},
		{"quiet hours starting at no time", jobBody(`,"quiet_hours":{"start":"9pm","end":"08:00"}`), nil,
			fieldErrors{{"quiet_hours", `start must be a local time like "21:00"`}}},
		{"quiet hours ending at no time", jobBody(`,"quiet_hours":{"start":"21:00","end":"24:00"}`), nil,
			fieldErrors{{"quiet_hours", `end must be a local time like "21:00"`}}},
		{"quiet hours of no length", jobBody(`,"quiet_hours":{"start":"21:00","end":"21:00"}`), nil,
			fieldErrors{{"quiet_hours", "start and end must differ"}}},
		{"quiet hours of an unknown mode", jobBody(`,"quiet_hours":{"start":"21:00","end":"08:00","mode":"later"}`), nil,
			fieldErrors{{"quiet_hours", `mode must be "hold" or "skip"`}}},
		{"picking that is no Picking", jobBody(`,"picking":{"strategies":"co_view"}`), nil,
			fieldErrors{{"picking", ""}}},
		{"picking with an unknown member", jobBody(`,"picking":{"rules":[]}`), nil,
			fieldErrors{{"picking", "rules"}}},
		{"picking of an unknown strategy", jobBody(`,"picking":{"strategies":[{"name":"magic"}]}`), nil,
			fieldErrors{{"picking", `invalid picking: unknown strategy "magic"`}}},
		{"picking wanting more products than the message has", jobBody(`,"products":2,"picking":{"strategies":[{"name":"co_view"}],"min_products":3}`), nil,
			fieldErrors{{"picking", "min_products must be between 0 and the products per message (2)"}}},
		{"campaign over 100 bytes", jobBody(`,"campaign":"` + strings.Repeat("x", 101) + `"`), nil,
			fieldErrors{{"campaign", "longer than 100 bytes"}}},
		{"CR/LF in the campaign (a header value)", jobBody(`,"campaign":"bf\r\nX-Evil: 1"`), nil,
			fieldErrors{{"campaign", "must not contain CR or LF: it becomes part of a message header"}}},
		{"control character in the campaign", jobBody(`,"campaign":"bf\u0007"`), nil,
			fieldErrors{{"campaign", "must not contain control characters"}}},
		{"DEL in the campaign", jobBody(`,"campaign":"bf\u007f"`), nil,
			fieldErrors{{"campaign", "must not contain control characters"}}},
		{"send_at in the past", jobBody(`,"send_at":` + at(-2*time.Minute)), nil,
			fieldErrors{{"send_at", "is in the past"}}},
		{"send_at beyond the horizon", jobBody(`,"send_at":` + at(31*24*time.Hour)), nil,
			fieldErrors{{"send_at", "is more than 720h0m0s ahead"}}},
		{"deadline before send_at", jobBody(`,"send_at":` + at(2*time.Hour) + `,"deadline":` + at(90*time.Minute)), nil,
			fieldErrors{{"deadline", "is not after send_at"}}},
		{"deadline at send_at", jobBody(`,"send_at":` + at(2*time.Hour) + `,"deadline":` + at(2*time.Hour)), nil,
			fieldErrors{{"deadline", "is not after send_at"}}},
		{"deadline in the past", jobBody(`,"deadline":"2020-01-01T00:00:00Z"`), nil,
			fieldErrors{{"deadline", "must be at least 1m0s after the job starts"}}},
		{"deadline too soon after the start", jobBody(`,"deadline":` + at(30*time.Second)), nil,
			fieldErrors{{"deadline", "must be at least 1m0s after the job starts"}}},
		{"deadline too soon after send_at", jobBody(`,"send_at":` + at(time.Hour) + `,"deadline":` + at(time.Hour+30*time.Second)), nil,
			fieldErrors{{"deadline", "must be at least 1m0s after the job starts"}}},
		{"deadline too far after the start", jobBody(`,"deadline":` + at(8*24*time.Hour)), nil,
			fieldErrors{{"deadline", "must be within 168h0m0s of the job's start"}}},
		{"everything wrong at once", `{"channel":"fax","template":{"id":""},"audience":{},"products":99,"campaign":"a\nb",` +
			`"send_at":` + at(-time.Hour) + `}`, nil,
			fieldErrors{{"channel", "must be one of"}, {"template.id", "must name a template"}, {"audience", "set exactly one"},
				{"products", "must be between"}, {"campaign", "CR or LF"}, {"send_at", "is in the past"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			limits := DefaultLimits
			if tc.limits != nil {
				limits = *tc.limits
			}
			job, got := parseJob(decodeJob(t, tc.body), parseNow, limits)
			if !matchProblems(tc.want, got) {
				t.Errorf("problems\n got: %q\nwant: %q", got, tc.want)
			}
			if diff := cmp.Diff(store.NewJob{}, job); diff != "" {
				t.Errorf("a refused request gave a job:\n%s", diff)
			}
		})
	}
}

// matchProblems reports whether got are the problems want describes: the
// same fields in the same order, each message containing the one wanted.
func matchProblems(want, got fieldErrors) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if want[i].Field != got[i].Field || !strings.Contains(got[i].Message, want[i].Message) {
			return false
		}
	}
	return true
}

// TestParseJobAccepts shows what a valid request becomes: defaults filled
// in, times in UTC, ids sorted and distinct, send_at only when it is
// ahead, and no deadline when the request names none (the handler takes
// the tenant's default).
func TestParseJobAccepts(t *testing.T) {
	future := parseNow.Add(2 * time.Hour)
	tests := []struct {
		name string
		body string
		want store.NewJob
		// wantQuiet is the job's quiet hours, decoded.
		wantQuiet *eventv1.QuietHours
		wantStart time.Time
	}{
		{"the defaults", jobBody(""),
			store.NewJob{Channel: "email", TemplateID: "bf", Audience: store.Audience{AllSubscribed: true},
				ProductsPerMessage: 6, SubmittedAt: parseNow}, nil, parseNow},
		{"every channel: ad", `{"channel":"ad","template":{"id":"bf","version":3},"audience":{"all_subscribed":true},"products":0,"campaign":"bf-2026"}`,
			store.NewJob{Channel: "ad", TemplateID: "bf", TemplateVersion: 3, Audience: store.Audience{AllSubscribed: true},
				ProductsPerMessage: 0, Campaign: "bf-2026", SubmittedAt: parseNow}, nil, parseNow},
		{"customer ids sorted and distinct", `{"channel":"onsite","template":{"id":"bf"},"audience":{"customer_ids":["c2","c1","c2"]}}`,
			store.NewJob{Channel: "onsite", TemplateID: "bf", Audience: store.Audience{CustomerIDs: []string{"c1", "c2"}},
				ProductsPerMessage: 6, SubmittedAt: parseNow}, nil, parseNow},
		{"a segment, kept as given and compiled", `{"channel":"email","template":{"id":"bf"},"audience":{"segment":{"attribute":"tier","op":"eq","value":"gold"}}}`,
			store.NewJob{Channel: "email", TemplateID: "bf",
				Audience:           store.Audience{Segment: []byte(`{"attribute":"tier","op":"eq","value":"gold"}`), SegmentPath: `$."tier" == "gold"`},
				ProductsPerMessage: 6, SubmittedAt: parseNow}, nil, parseNow},
		{"send_at within the skew means now", jobBody(`,"send_at":` + at(-30*time.Second)),
			store.NewJob{Channel: "email", TemplateID: "bf", Audience: store.Audience{AllSubscribed: true},
				ProductsPerMessage: 6, SubmittedAt: parseNow}, nil, parseNow},
		{"send_at ahead, deadline from it, both in UTC",
			jobBody(`,"send_at":"` + future.In(time.FixedZone("", 3600)).Format(time.RFC3339) + `","deadline":"` +
				future.Add(7*24*time.Hour).In(time.FixedZone("", -5*3600)).Format(time.RFC3339) + `"`),
			store.NewJob{Channel: "email", TemplateID: "bf", Audience: store.Audience{AllSubscribed: true},
				ProductsPerMessage: 6, SubmittedAt: parseNow, SendAt: &future,
				Deadline: future.Add(7 * 24 * time.Hour)}, nil, future},
		{"quiet hours hold by default", jobBody(`,"quiet_hours":{"start":"21:30","end":"08:00"}`),
			store.NewJob{Channel: "email", TemplateID: "bf", Audience: store.Audience{AllSubscribed: true},
				ProductsPerMessage: 6, SubmittedAt: parseNow},
			&eventv1.QuietHours{StartMinute: 21*60 + 30, EndMinute: 8 * 60, Mode: "hold"}, parseNow},
		{"quiet hours that skip", jobBody(`,"quiet_hours":{"start":"00:00","end":"06:15","mode":"skip"}`),
			store.NewJob{Channel: "email", TemplateID: "bf", Audience: store.Audience{AllSubscribed: true},
				ProductsPerMessage: 6, SubmittedAt: parseNow},
			&eventv1.QuietHours{StartMinute: 0, EndMinute: 6*60 + 15, Mode: "skip"}, parseNow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := decodeJob(t, tc.body)
			job, problems := parseJob(req, parseNow, DefaultLimits)
			if problems != nil {
				t.Fatalf("refused: %v", problems)
			}
			if len(job.RequestHash) != 32 {
				t.Errorf("request hash of %d bytes, want a SHA-256", len(job.RequestHash))
			}
			if diff := cmp.Diff(tc.want, job, cmpopts.IgnoreFields(store.NewJob{}, "RequestHash", "QuietHours")); diff != "" {
				t.Errorf("job (-want +got):\n%s", diff)
			}
			if got := job.Start(); !got.Equal(tc.wantStart) {
				t.Errorf("start %v, want %v", got, tc.wantStart)
			}
			var quiet *eventv1.QuietHours
			if job.QuietHours != nil {
				quiet = &eventv1.QuietHours{}
				if err := protojson.Unmarshal(job.QuietHours, quiet); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(tc.wantQuiet, quiet, protocmp.Transform()); diff != "" {
				t.Errorf("quiet hours (-want +got):\n%s", diff)
			}
			// parseJob fills in defaults on its own copy: the caller's
			// request stays as decoded.
			if again := decodeJob(t, tc.body); !cmp.Equal(again, req, cmpopts.IgnoreUnexported(Segment{})) {
				t.Errorf("parseJob changed its input:\n%s", cmp.Diff(again, req, cmpopts.IgnoreUnexported(Segment{})))
			}
		})
	}
}

// TestParseJobKeepsThePicking: a picking is checked against the job's
// products and stored as the message it is.
func TestParseJobKeepsThePicking(t *testing.T) {
	job, problems := parseJob(decodeJob(t, jobBody(`,"products":3,"picking":{"strategies":[{"name":"co_view","lookback_hours":48},`+
		`{"name":"catalog_best_sellers"}],"on_short":"skip","min_products":3}`)), parseNow, DefaultLimits)
	if problems != nil {
		t.Fatalf("refused: %v", problems)
	}
	got := &eventv1.Picking{}
	if err := protojson.Unmarshal(job.Picking, got); err != nil {
		t.Fatal(err)
	}
	want := &eventv1.Picking{Strategies: []*eventv1.Strategy{{Name: "co_view", LookbackHours: 48}, {Name: "catalog_best_sellers"}},
		OnShort: "skip", MinProducts: 3}
	if !proto.Equal(want, got) {
		t.Errorf("picking %v, want %v", got, want)
	}
	if job, _ := parseJob(decodeJob(t, jobBody(`,"picking":null`)), parseNow, DefaultLimits); job.Picking != nil {
		t.Errorf("picking null stored as %q, want none (the default chain)", job.Picking)
	}
}

// TestRequestHashIsPinned: the request hash decides whether a retry is the
// same request, and jobs keep it, so a release that hashed a request
// differently would refuse a retry sent across an upgrade. The sums are
// those the release before parseJob stored for these requests.
func TestRequestHashIsPinned(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"every field", `{"channel":"onsite","template":{"id":"bf","version":1},"audience":{"all_subscribed":true},"products":4,"campaign":"bf-2026",` +
			`"send_at":"2026-11-27T10:00:00Z","deadline":"2026-11-27T22:00:00+01:00","quiet_hours":{"start":"21:00","end":"08:00"},` +
			`"picking":{"strategies":[{"name":"co_view","lookback_hours":48}],"on_short":"skip"}}`,
			"6ca83f7da0f6be6d1bc6a91b5fccd8f2d643eb1704b1ab905b432825a2a43f98"},
		{"a segment", `{"channel":"email","template":{"id":"bf"},"audience":{"segment":{"attribute":"tier","op":"eq","value":"gold"}}}`,
			"20149f99fef27a108f28de8aa0b40fb8633206d1221a469364e6767c035e7f96"},
	} {
		job, problems := parseJob(decodeJob(t, tc.body), parseNow, DefaultLimits)
		if problems != nil {
			t.Fatalf("%s: refused: %v", tc.name, problems)
		}
		if got := hex.EncodeToString(job.RequestHash); got != tc.want {
			t.Errorf("%s: request hash %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestRequestHashIsOfTheRequestAsUnderstood: spacing, member order and
// spelled-out defaults do not make another request; any other change does.
func TestRequestHashIsOfTheRequestAsUnderstood(t *testing.T) {
	hash := func(body string) string {
		t.Helper()
		job, problems := parseJob(decodeJob(t, body), parseNow, DefaultLimits)
		if problems != nil {
			t.Fatalf("%s: refused: %v", body, problems)
		}
		return hex.EncodeToString(job.RequestHash)
	}
	base := hash(jobBody(`,"quiet_hours":{"start":"21:00","end":"08:00"}`))
	for _, same := range []string{
		`{ "audience": {"all_subscribed": true}, "template": {"id": "bf"}, "channel": "email",
		   "quiet_hours": {"end": "08:00", "start": "21:00"} }`,
		jobBody(`,"quiet_hours":{"start":"21:00","end":"08:00","mode":"hold"}`),
	} {
		if got := hash(same); got != base {
			t.Errorf("%s: hash %s, want the same as %s", same, got, base)
		}
	}
	for _, other := range []string{
		jobBody(`,"quiet_hours":{"start":"21:00","end":"08:00","mode":"skip"}`),
		jobBody(`,"quiet_hours":{"start":"21:00","end":"08:00"},"products":6`),
		jobBody(`,"quiet_hours":{"start":"21:00","end":"08:01"}`),
	} {
		if got := hash(other); got == base {
			t.Errorf("%s: the same hash as the base request", other)
		}
	}
}

package deliver

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"herald/dispatch/internal/ledger"
	"herald/dispatch/internal/provider"
	eventv1 "herald/shared/event/v1"
)

// chunkOf returns rendered messages for the customer ids and the map of
// them by id that classify reads.
func chunkOf(ids ...string) map[string]*eventv1.Rendered {
	rendered := map[string]*eventv1.Rendered{}
	for _, id := range ids {
		rendered[id] = &eventv1.Rendered{CustomerId: id, Email: id + "@example.com", MessageId: id + "@acme.example"}
	}
	return rendered
}

var planOpts = cmp.Options{cmp.AllowUnexported(plan{}, ended{}), protocmp.Transform(), cmpopts.EquateEmpty()}

func TestClassify(t *testing.T) {
	rs := chunkOf("a", "b", "c", "d", "e", "f")
	early := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
	late := early.Add(2 * time.Hour)
	for _, tc := range []struct {
		name   string
		claims []ledger.Claim
		want   plan
	}{
		{
			name: "nothing claimed: the job is not active or other batches own the rows",
		},
		{
			name:   "claimed now: sent",
			claims: []ledger.Claim{{CustomerID: "a", State: ledger.Sending, Fresh: true, Provider: "smtp"}, {CustomerID: "b", State: ledger.Sending, Fresh: true, Provider: "smtp"}},
			want:   plan{send: []*eventv1.Rendered{rs["a"], rs["b"]}},
		},
		{
			name: "left in sending by an earlier attempt: settled with the provider that had them, not sent",
			claims: []ledger.Claim{{CustomerID: "a", State: ledger.Sending, Provider: "smtp"},
				{CustomerID: "b", State: ledger.Sending, Provider: "esp"}, {CustomerID: "c", State: ledger.Sending, Provider: "smtp"}},
			want: plan{interrupted: map[string][]*eventv1.Rendered{"smtp": {rs["a"], rs["c"]}, "esp": {rs["b"]}}},
		},
		{
			name: "held for quiet hours now: the earliest hold is kept, nothing sent",
			claims: []ledger.Claim{{CustomerID: "a", State: ledger.Deferred, Fresh: true, NotBefore: &late},
				{CustomerID: "b", State: ledger.Deferred, Fresh: true, NotBefore: &early}},
			want: plan{hold: &early},
		},
		{
			name:   "left deferred by an earlier attempt: retried",
			claims: []ledger.Claim{{CustomerID: "a", State: ledger.Deferred}, {CustomerID: "b", State: ledger.Deferred, NotBefore: &early}},
			want:   plan{retry: []string{"a", "b"}},
		},
		{
			name: "final now without a send: counted, and the suppressed taken out of an ad audience",
			claims: []ledger.Claim{{CustomerID: "a", State: ledger.Suppressed, Fresh: true}, {CustomerID: "b", State: ledger.Expired, Fresh: true},
				{CustomerID: "c", State: ledger.Capped, Fresh: true}, {CustomerID: "d", State: ledger.Skipped, Fresh: true},
				{CustomerID: "e", State: ledger.Failed, Fresh: true}},
			want: plan{
				ended: []ended{{ledger.Suppressed, rs["a"]}, {ledger.Expired, rs["b"]}, {ledger.Capped, rs["c"]},
					{ledger.Skipped, rs["d"]}, {ledger.Failed, rs["e"]}},
				suppressed: []*eventv1.Rendered{rs["a"]},
			},
		},
		{
			name: "made final by an earlier attempt: left alone, counted then",
			claims: []ledger.Claim{{CustomerID: "a", State: ledger.Sent, Provider: "smtp"}, {CustomerID: "b", State: ledger.Suppressed},
				{CustomerID: "c", State: ledger.Ambiguous, Provider: "smtp"}},
		},
		{
			name: "a chunk of everything",
			claims: []ledger.Claim{{CustomerID: "a", State: ledger.Sending, Fresh: true, Provider: "smtp"},
				{CustomerID: "b", State: ledger.Sending, Provider: "smtp"}, {CustomerID: "c", State: ledger.Deferred, Fresh: true, NotBefore: &early},
				{CustomerID: "d", State: ledger.Deferred}, {CustomerID: "e", State: ledger.Suppressed, Fresh: true},
				{CustomerID: "f", State: ledger.Sent}},
			want: plan{send: []*eventv1.Rendered{rs["a"]}, interrupted: map[string][]*eventv1.Rendered{"smtp": {rs["b"]}},
				retry: []string{"d"}, hold: &early, ended: []ended{{ledger.Suppressed, rs["e"]}}, suppressed: []*eventv1.Rendered{rs["e"]}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, classify(tc.claims, rs), planOpts); diff != "" {
				t.Errorf("classify (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClassifyRetried(t *testing.T) {
	rs := chunkOf("a", "b", "c", "d")
	early := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
	late := early.Add(time.Hour)
	for _, tc := range []struct {
		name         string
		ids          []string
		states       map[string]ledger.Retried
		want         plan
		wantComplete bool
	}{
		{
			name: "claimed again: sent", ids: []string{"a", "b"},
			states:       map[string]ledger.Retried{"a": {State: ledger.Sending}, "b": {State: ledger.Sending}},
			want:         plan{send: []*eventv1.Rendered{rs["a"], rs["b"]}},
			wantComplete: true,
		},
		{
			name: "held for quiet hours: the earliest hold", ids: []string{"a", "b"},
			states:       map[string]ledger.Retried{"a": {State: ledger.Deferred, NotBefore: &late}, "b": {State: ledger.Deferred, NotBefore: &early}},
			want:         plan{hold: &early},
			wantComplete: true,
		},
		{
			name: "final since: counted", ids: []string{"a", "b"},
			states:       map[string]ledger.Retried{"a": {State: ledger.Expired}, "b": {State: ledger.Suppressed}},
			want:         plan{ended: []ended{{ledger.Expired, rs["a"]}, {ledger.Suppressed, rs["b"]}}},
			wantComplete: true,
		},
		{
			name: "left alone because the job is not active: not complete", ids: []string{"a", "b", "c", "d"},
			states:       map[string]ledger.Retried{"b": {State: ledger.Sending}, "d": {State: ledger.Failed}},
			want:         plan{send: []*eventv1.Rendered{rs["b"]}, ended: []ended{{ledger.Failed, rs["d"]}}},
			wantComplete: false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, complete := classifyRetried(tc.ids, tc.states, rs)
			if diff := cmp.Diff(tc.want, got, planOpts); diff != "" {
				t.Errorf("classifyRetried (-want +got):\n%s", diff)
			}
			if complete != tc.wantComplete {
				t.Errorf("classifyRetried complete = %v, want %v", complete, tc.wantComplete)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	byID := chunkOf("a", "b", "c")
	rs := []*eventv1.Rendered{byID["a"], byID["b"], byID["c"]}
	for _, tc := range []struct {
		name         string
		results      []provider.Result
		idempotent   bool
		want         []ledger.Outcome
		wantDoubtful []*eventv1.Rendered
		wantThrottle int
	}{
		{
			name:    "accepted, refused for good, refused for now",
			results: []provider.Result{{Outcome: provider.Sent, Reason: "250 ok"}, {Outcome: provider.Failed, Code: 550, Reason: "550 mailbox full"}, {Outcome: provider.Deferred, Reason: "451 try later"}},
			want: []ledger.Outcome{{CustomerID: "a", State: ledger.Sent, Reason: "250 ok"}, {CustomerID: "b", State: ledger.Failed, Reason: "550 mailbox full"},
				{CustomerID: "c", State: ledger.Deferred, Reason: "451 try later"}},
		},
		{
			name:    "a hard bounce suppresses the address",
			results: []provider.Result{{Outcome: provider.Failed, Code: 550, Reason: "550 5.1.1 no such user", HardBounce: true}, {Outcome: provider.Sent}, {Outcome: provider.Sent}},
			want: []ledger.Outcome{{CustomerID: "a", State: ledger.Failed, Reason: "550 5.1.1 no such user", Suppress: "a@example.com"},
				{CustomerID: "b", State: ledger.Sent}, {CustomerID: "c", State: ledger.Sent}},
		},
		{
			name:    "throttled: deferred, and the first throttling status is kept",
			results: []provider.Result{{Outcome: provider.Sent}, {Outcome: provider.Throttled, Code: 421, Reason: "421 slow down"}, {Outcome: provider.Throttled, Code: 429}},
			want: []ledger.Outcome{{CustomerID: "a", State: ledger.Sent}, {CustomerID: "b", State: ledger.Deferred, Reason: "421 slow down"},
				{CustomerID: "c", State: ledger.Deferred}},
			wantThrottle: 421,
		},
		{
			name:         "throttled without a status",
			results:      []provider.Result{{Outcome: provider.Throttled}, {Outcome: provider.Sent}, {Outcome: provider.Sent}},
			want:         []ledger.Outcome{{CustomerID: "a", State: ledger.Deferred}, {CustomerID: "b", State: ledger.Sent}, {CustomerID: "c", State: ledger.Sent}},
			wantThrottle: 1,
		},
		{
			name:         "no reply from a provider that is not idempotent: in doubt, undecided",
			results:      []provider.Result{{Outcome: provider.Unknown, Reason: "read: connection reset"}, {Outcome: provider.Sent}, {Outcome: provider.Unknown}},
			want:         []ledger.Outcome{{CustomerID: "b", State: ledger.Sent}},
			wantDoubtful: []*eventv1.Rendered{byID["a"], byID["c"]},
		},
		{
			name:       "no reply from an idempotent provider: deferred, since a repeat is dropped",
			results:    []provider.Result{{Outcome: provider.Unknown, Reason: "timeout"}, {Outcome: provider.Sent}, {Outcome: provider.Unknown}},
			idempotent: true,
			want: []ledger.Outcome{{CustomerID: "a", State: ledger.Deferred, Reason: "timeout"}, {CustomerID: "b", State: ledger.Sent},
				{CustomerID: "c", State: ledger.Deferred}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, doubtful, throttle := judge(rs, tc.results, tc.idempotent)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantDoubtful, doubtful, protocmp.Transform(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("doubtful (-want +got):\n%s", diff)
			}
			if throttle != tc.wantThrottle {
				t.Errorf("throttle = %d, want %d", throttle, tc.wantThrottle)
			}
		})
	}
}

// TestMessages pins what a provider is handed for each channel: the key is
// the delivery's tenant/job/channel/customer, which idempotent providers
// deduplicate by, so it must stay what the running releases send.
func TestMessages(t *testing.T) {
	deadline := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	r := &eventv1.Rendered{CustomerId: "c7", Email: "c7@example.com", MessageId: "m7@acme.example",
		Mime: []byte("Subject: Hi\r\n\r\nHi.\r\n"), Payload: []byte(`{"title":"Hi"}`)}
	const job = "0d3c1a52-8d2e-4f43-9b61-4c5a0f6e2a11"
	for _, tc := range []struct {
		channel, campaign string
		wantKey           string
		wantBody          []byte
	}{
		{"email", "", "acme/" + job + "/email/c7", r.Mime},
		{"onsite", "", "acme/" + job + "/onsite/c7", r.Payload},
		{"ad", "", "acme/" + job + "/ad/c7", []byte(`{"audience":"herald-acme-` + job + `"}`)},
		{"ad", "bf2026", "acme/" + job + "/ad/c7", []byte(`{"audience":"herald-acme-bf2026"}`)},
	} {
		t.Run(tc.channel+" "+tc.campaign, func(t *testing.T) {
			in := &eventv1.DispatchBatch{From: "shop@acme.example", Job: &eventv1.Job{TenantId: "acme", JobId: job, Channel: tc.channel,
				Campaign: tc.campaign, Deadline: timestamppb.New(deadline)}}
			want := []*provider.Message{{Key: tc.wantKey, MessageID: "m7@acme.example", From: "shop@acme.example", To: "c7@example.com",
				Body: tc.wantBody, Tenant: "acme", CustomerID: "c7", JobID: job, ExpiresAt: deadline}}
			if diff := cmp.Diff(want, messages(in, []*eventv1.Rendered{r})); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
		})
	}
}

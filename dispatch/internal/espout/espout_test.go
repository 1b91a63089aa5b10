package espout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/devtools/espcatch"
	"herald/dispatch/internal/espout"
	"herald/dispatch/internal/provider"
)

func startESP(t *testing.T, opts espcatch.Options) *espcatch.Server {
	t.Helper()
	s, err := espcatch.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newClient(t *testing.T, cfg espout.Config) *espout.Client {
	t.Helper()
	c, err := espout.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// batch makes n messages; their keys and Message-IDs carry the prefix.
func batch(prefix string, n int) []*provider.Message {
	var msgs []*provider.Message
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		msgs = append(msgs, &provider.Message{
			Key:       "tenant1/job1/email/" + id,
			MessageID: id + "@herald.test",
			From:      "bounce@shop.example",
			To:        id + "@example.com",
			Body:      []byte("Message-ID: <" + id + "@herald.test>\r\nSubject: \"quoted\" \\ and ünïcode\r\n\r\nbody of " + id + "\r\n.\r\n"),
		})
	}
	return msgs
}

func outcomes(res []provider.Result) []provider.Outcome {
	var out []provider.Outcome
	for _, r := range res {
		out = append(out, r.Outcome)
	}
	return out
}

func repeat(o provider.Outcome, n int) []provider.Outcome {
	out := make([]provider.Outcome, n)
	for i := range out {
		out[i] = o
	}
	return out
}

func TestSendsInBatches(t *testing.T) {
	esp := startESP(t, espcatch.Options{APIKey: "k3y", KeepRaw: true})
	c := newClient(t, espout.Config{BaseURL: esp.URL(), APIKey: "k3y", Batch: 3})
	if !c.Idempotent() || !strings.HasPrefix(c.Name(), "esp:127.0.0.1:") {
		t.Errorf("Idempotent %v, Name %q", c.Idempotent(), c.Name())
	}
	msgs := batch("m", 7)
	res := c.Send(context.Background(), msgs)
	if diff := cmp.Diff(repeat(provider.Sent, 7), outcomes(res)); diff != "" {
		t.Fatalf("outcomes (-want +got):\n%s\n%+v", diff, res)
	}
	if st := esp.Stats(); st.Requests != 3 || st.Messages != 7 {
		t.Errorf("stats %+v, want 7 messages in 3 requests", st)
	}
	got := map[string]espcatch.Message{}
	for _, m := range esp.Messages() {
		got[m.IdempotencyKey] = m
	}
	for i, m := range msgs {
		g := got[m.Key]
		if g.To != m.To || g.From != m.From || g.MessageID != m.MessageID || string(g.Raw) != string(m.Body) {
			t.Errorf("message %d arrived as %+v", i, g)
		}
		if res[i].Code != http.StatusAccepted || res[i].Reason != g.ID {
			t.Errorf("message %d: result %+v, provider id %s", i, res[i], g.ID)
		}
	}
}

func TestPerMessageResults(t *testing.T) {
	esp := startESP(t, espcatch.Options{})
	esp.SetReject(func(m espcatch.SendMessage) *espcatch.Rejection {
		switch {
		case strings.HasPrefix(m.To, "m1@"):
			return &espcatch.Rejection{Status: 422, Error: "no such mailbox", HardBounce: true}
		case strings.HasPrefix(m.To, "m2@"):
			return &espcatch.Rejection{Status: 400, Error: "bad content"}
		case strings.HasPrefix(m.To, "m3@"):
			return &espcatch.Rejection{Status: 503, Error: "busy"}
		case strings.HasPrefix(m.To, "m4@"):
			return &espcatch.Rejection{Status: 429, Error: "slow down"}
		}
		return nil
	})
	c := newClient(t, espout.Config{BaseURL: esp.URL()})
	msgs := batch("m", 5)
	res := c.Send(context.Background(), msgs)
	want := []provider.Result{
		{Outcome: provider.Sent, Code: 202, Reason: "esp-1"},
		{Outcome: provider.Failed, Code: 422, Reason: "no such mailbox", HardBounce: true},
		{Outcome: provider.Failed, Code: 400, Reason: "bad content"},
		{Outcome: provider.Deferred, Code: 503, Reason: "busy"},
		{Outcome: provider.Throttled, Code: 429, Reason: "slow down"},
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	// A key reused for another recipient is refused, not delivered.
	other := *msgs[0]
	other.To = "someone.else@example.com"
	if r := c.Send(context.Background(), []*provider.Message{&other})[0]; r.Outcome != provider.Failed || r.Code != 409 {
		t.Errorf("reused key: %+v", r)
	}
}

func TestWholeRequestFailures(t *testing.T) {
	tests := []struct {
		name  string
		fault espcatch.Fault
		key   string
		want  provider.Outcome
		code  int
	}{
		{"503", espcatch.Fault{Status: 503}, "k", provider.Deferred, 503},
		{"500", espcatch.Fault{Status: 500}, "k", provider.Deferred, 500},
		{"wrong key", espcatch.Fault{}, "wrong", provider.Deferred, 401},
		{"400", espcatch.Fault{Status: 400}, "k", provider.Failed, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			esp := startESP(t, espcatch.Options{APIKey: "k"})
			esp.SetFault(func(espcatch.Request) espcatch.Fault { return tc.fault })
			c := newClient(t, espout.Config{BaseURL: esp.URL(), APIKey: tc.key})
			for i, r := range c.Send(context.Background(), batch("m", 3)) {
				if r.Outcome != tc.want || r.Code != tc.code {
					t.Errorf("message %d: %+v, want %v %d", i, r, tc.want, tc.code)
				}
			}
			if st := esp.Stats(); st.Messages != 0 {
				t.Errorf("accepted %d messages", st.Messages)
			}
		})
	}
}

func TestTooManyRequestsPausesTheClient(t *testing.T) {
	esp := startESP(t, espcatch.Options{})
	var throttle atomic.Bool
	throttle.Store(true)
	esp.SetFault(func(espcatch.Request) espcatch.Fault {
		if throttle.Load() {
			return espcatch.Fault{Status: 429, RetryAfter: time.Second}
		}
		return espcatch.Fault{}
	})
	c := newClient(t, espout.Config{BaseURL: esp.URL()})
	for i, r := range c.Send(context.Background(), batch("a", 2)) {
		if r.Outcome != provider.Throttled || r.Code != 429 || !strings.Contains(r.Reason, "retry after 1s") {
			t.Errorf("message %d: %+v", i, r)
		}
	}
	throttle.Store(false)
	// Within the second the provider asked for, nothing is sent.
	for i, r := range c.Send(context.Background(), batch("b", 2)) {
		if r.Outcome != provider.Throttled || !strings.Contains(r.Reason, "paused") {
			t.Errorf("while paused, message %d: %+v", i, r)
		}
	}
	if st := esp.Stats(); st.Requests != 1 {
		t.Errorf("%d requests reached the provider during the pause, want 1", st.Requests)
	}
	time.Sleep(1100 * time.Millisecond)
	if diff := cmp.Diff(repeat(provider.Sent, 2), outcomes(c.Send(context.Background(), batch("c", 2)))); diff != "" {
		t.Errorf("after the pause (-want +got):\n%s", diff)
	}
}

// TestUnknownIsSafeToRetry: when the answer is lost after the request went
// out, every message is Unknown, and sending the batch again delivers each
// exactly once.
func TestUnknownIsSafeToRetry(t *testing.T) {
	tests := []struct {
		name  string
		fault espcatch.Fault
	}{
		{"dropped before accepting", espcatch.Fault{Drop: true}},
		{"dropped after accepting", espcatch.Fault{DropAfterAccept: true}},
		{"answer too late", espcatch.Fault{Delay: 600 * time.Millisecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			esp := startESP(t, espcatch.Options{})
			var calls atomic.Int32
			esp.SetFault(func(espcatch.Request) espcatch.Fault {
				if calls.Add(1) == 1 {
					return tc.fault
				}
				return espcatch.Fault{}
			})
			c := newClient(t, espout.Config{BaseURL: esp.URL(), Timeout: 300 * time.Millisecond})
			msgs := batch("m", 4)
			if diff := cmp.Diff(repeat(provider.Unknown, 4), outcomes(c.Send(context.Background(), msgs))); diff != "" {
				t.Fatalf("first attempt (-want +got):\n%s", diff)
			}
			time.Sleep(500 * time.Millisecond) // a late request lands meanwhile
			res := c.Send(context.Background(), msgs)
			if diff := cmp.Diff(repeat(provider.Sent, 4), outcomes(res)); diff != "" {
				t.Fatalf("retry (-want +got):\n%s", diff)
			}
			st := esp.Stats()
			if st.Messages != 4 || len(esp.Messages()) != 4 {
				t.Errorf("stats %+v: want each message accepted once", st)
			}
			if tc.fault.Drop == false && st.Duplicates != 4 {
				t.Errorf("stats %+v: the retry should have been answered from the record", st)
			}
		})
	}
}

func TestDeferredWhenNothingWasSent(t *testing.T) {
	c := newClient(t, espout.Config{BaseURL: "http://127.0.0.1:1"})
	for i, r := range c.Send(context.Background(), batch("m", 2)) {
		if r.Outcome != provider.Deferred {
			t.Errorf("closed port, message %d: %+v", i, r)
		}
	}
	esp := startESP(t, espcatch.Options{})
	c = newClient(t, espout.Config{BaseURL: esp.URL()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i, r := range c.Send(ctx, batch("m", 2)) {
		if r.Outcome != provider.Deferred {
			t.Errorf("cancelled, message %d: %+v", i, r)
		}
	}
	if st := esp.Stats(); st.Requests != 0 {
		t.Errorf("%d requests reached the provider", st.Requests)
	}
}

// TestTooLargeSplits: a provider that takes smaller requests than the
// client was told gets the batch in halves.
func TestTooLargeSplits(t *testing.T) {
	esp := startESP(t, espcatch.Options{MaxRequestBytes: 40 << 10})
	c := newClient(t, espout.Config{BaseURL: esp.URL(), Batch: 100})
	msgs := batch("m", 10)
	for _, m := range msgs {
		m.Body = append(m.Body, strings.Repeat("0123456789abcdef\r\n", 512)...) // about 12 KiB encoded
	}
	huge := batch("huge", 1)[0]
	huge.Body = make([]byte, 64<<10)
	res := c.Send(context.Background(), append(msgs, huge))
	if diff := cmp.Diff(append(repeat(provider.Sent, 10), provider.Failed), outcomes(res)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if res[10].Code != 413 {
		t.Errorf("the message too large on its own: %+v", res[10])
	}
	if st := esp.Stats(); st.Messages != 10 {
		t.Errorf("stats %+v", st)
	}
}

// TestUnreadableAnswers uses a broken provider: results missing or not
// JSON leave the messages Unknown, since they may have been accepted.
func TestUnreadableAnswers(t *testing.T) {
	var answer atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req espcatch.SendRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("the client sent bad JSON: %v", err)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(answer.Load().(string)))
	}))
	defer srv.Close()
	c := newClient(t, espout.Config{BaseURL: srv.URL})
	msgs := batch("m", 2)
	answer.Store(`{"results":[{"idempotency_key":"tenant1/job1/email/m1","status":202,"id":"x"}]}`)
	if diff := cmp.Diff([]provider.Outcome{provider.Unknown, provider.Sent}, outcomes(c.Send(context.Background(), msgs))); diff != "" {
		t.Errorf("a missing result (-want +got):\n%s", diff)
	}
	answer.Store(`<html>oops</html>`)
	if diff := cmp.Diff(repeat(provider.Unknown, 2), outcomes(c.Send(context.Background(), msgs))); diff != "" {
		t.Errorf("not JSON (-want +got):\n%s", diff)
	}
}

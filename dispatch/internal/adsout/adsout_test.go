package adsout_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/adcatch"
	"herald/dispatch/internal/adsout"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/route"
	"herald/shared/event"
)

// hash is the test's own hashing of an already normalized address.
func hash(normalized string) string {
	sum := sha256.Sum256([]byte(normalized))
	return hex.EncodeToString(sum[:])
}

func startAds(t *testing.T, opts adcatch.Options) *adcatch.Server {
	t.Helper()
	opts.AccessToken, opts.AdAccountID = "tok", "77"
	s, err := adcatch.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newClient(t *testing.T, ads *adcatch.Server, cfg adsout.Config) *adsout.Client {
	t.Helper()
	cfg.GraphURL, cfg.AdAccountID = ads.URL(), ads.AdAccountID()
	if cfg.AccessToken == "" {
		cfg.AccessToken = "tok"
	}
	c, err := adsout.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ad(to, audience string) *provider.Message {
	return &provider.Message{Key: "t/j/ad/" + to, To: to, Body: adsout.Body(adsout.Payload{Audience: audience})}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func outcomes(res []provider.Result) []provider.Outcome {
	var out []provider.Outcome
	for _, r := range res {
		out = append(out, r.Outcome)
	}
	return out
}

func TestNew(t *testing.T) {
	for name, cfg := range map[string]adsout.Config{
		"no account":  {AccessToken: "tok"},
		"act_ prefix": {AdAccountID: "act_77", AccessToken: "tok"},
		"no token":    {AdAccountID: "77"},
		"version":     {AdAccountID: "77", AccessToken: "tok", APIVersion: "25"},
		"file source": {AdAccountID: "77", AccessToken: "tok", CustomerFileSource: "SOMEWHERE"},
		"batch":       {AdAccountID: "77", AccessToken: "tok", Batch: 10001},
		"not a URL":   {AdAccountID: "77", AccessToken: "tok", GraphURL: "graph.facebook.com"},
	} {
		if _, err := adsout.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	c, err := adsout.New(adsout.Config{AdAccountID: "77", AccessToken: "tok"})
	if err != nil || c.Name() != "ads:meta:act_77" || !c.Idempotent() {
		t.Errorf("defaults: %v %v", c, err)
	}
}

func TestSendSyncsAudiences(t *testing.T) {
	ads := startAds(t, adcatch.Options{PageSize: 1})
	made := ads.CreateAudience("lapsed") // made in Ads Manager: found, not made again
	ads.CreateAudience("someone-elses")
	c := newClient(t, ads, adsout.Config{Batch: 2})
	msgs := []*provider.Message{
		ad("Ann.Smith@Example.com", "vip"),
		ad("bob@example.com", "vip"),
		ad(" ann.smith@EXAMPLE.com\t", "vip"), // the same person as the first
		ad("cy@example.org", "vip"),
		ad("dee@example.net", "lapsed"),
		ad("not an address", "vip"),
		{Key: "bad", To: "eve@example.com", Body: []byte(`{"audience": "../../admin"}`)},
		{Key: "worse", To: "eve@example.com", Body: []byte(`not json`)},
		ad("bob@example.com", "lapsed"),
		ad("Ann.Smith@gmail.com", "gmail"), // Gmail dots are kept: Meta documents no removal
		ad("annsmith@gmail.com", "gmail"),
	}
	res := c.Send(context.Background(), msgs)
	want := []provider.Outcome{provider.Sent, provider.Sent, provider.Sent, provider.Sent, provider.Sent,
		provider.Failed, provider.Failed, provider.Failed, provider.Sent, provider.Sent, provider.Sent}
	if diff := cmp.Diff(want, outcomes(res)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s\n%+v", diff, res)
	}
	if diff := cmp.Diff(sorted(hash("ann.smith@example.com"), hash("bob@example.com"), hash("cy@example.org")), ads.Members("vip")); diff != "" {
		t.Errorf("vip members (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sorted(hash("dee@example.net"), hash("bob@example.com")), ads.Members("lapsed")); diff != "" {
		t.Errorf("lapsed members (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sorted(hash("ann.smith@gmail.com"), hash("annsmith@gmail.com")), ads.Members("gmail")); diff != "" {
		t.Errorf("gmail members (-want +got):\n%s", diff)
	}
	// What reaches Meta is event.HashEmail, the hash render puts in the ad.
	if !ads.Has("vip", event.HashEmail(" Ann.Smith@Example.com ")) {
		t.Error("the uploaded hash is not event.HashEmail's")
	}
	var names []string
	for _, a := range ads.Audiences() {
		names = append(names, a.Name+"/"+a.CustomerFileSource)
		if a.Name == "lapsed" && a.ID != made {
			t.Errorf("lapsed was made again: %+v", a)
		}
	}
	if diff := cmp.Diff([]string{"lapsed/USER_PROVIDED_ONLY", "someone-elses/USER_PROVIDED_ONLY", "vip/USER_PROVIDED_ONLY", "gmail/USER_PROVIDED_ONLY"}, names); diff != "" {
		t.Errorf("audiences (-want +got):\n%s", diff)
	}
	// vip has 3 distinct members in batches of 2, one session; lapsed and gmail 2 each in one.
	st := ads.Stats()
	if st.Requests != 4 || st.Added != 7 || st.Unchanged != 0 || st.Creates != 2 {
		t.Errorf("stats %+v", st)
	}
	var vip []adcatch.Session
	for _, s := range ads.Sessions() {
		if s.Total == 3 {
			vip = append(vip, s)
		}
	}
	slices.SortFunc(vip, func(a, b adcatch.Session) int { return a.Seq - b.Seq })
	if len(vip) != 2 || vip[0].ID != vip[1].ID || vip[0].ID <= 0 || vip[0].Seq != 1 || vip[0].Last || vip[1].Seq != 2 || !vip[1].Last {
		t.Errorf("vip sessions %+v", vip)
	}

	// Again: nothing changes, every message is still Sent, and the ids are not looked up again.
	if diff := cmp.Diff(want, outcomes(c.Send(context.Background(), msgs))); diff != "" {
		t.Errorf("second send (-want +got):\n%s", diff)
	}
	if st2 := ads.Stats(); st2.Added != 7 || st2.Unchanged != 7 || st2.Lists != st.Lists || st2.Creates != 2 {
		t.Errorf("after repeating: stats %+v, before %+v", st2, st)
	}

	if err := c.Remove(context.Background(), "vip", []string{" ANN.smith@example.com", "nobody@example.com", "junk"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sorted(hash("bob@example.com"), hash("cy@example.org")), ads.Members("vip")); diff != "" {
		t.Errorf("vip after removal (-want +got):\n%s", diff)
	}
	before := ads.Stats()
	if err := c.RemoveHashed(context.Background(), "never-created", []string{hash("bob@example.com")}); err != nil {
		t.Errorf("removing from an unknown audience: %v", err)
	}
	if after := ads.Stats(); after.Creates != before.Creates || after.Requests != before.Requests {
		t.Errorf("removing from an unknown audience made requests: %+v", after)
	}
	if err := c.RemoveHashed(context.Background(), "bad/id", []string{hash("bob@example.com")}); err == nil {
		t.Error("RemoveHashed accepted an audience name with a slash")
	}
}

// TestRacingReplicasSettleOnOneAudience: when two audiences have the
// campaign's name (two replicas created it at once), every client uses
// the lowest id.
func TestRacingReplicasSettleOnOneAudience(t *testing.T) {
	ads := startAds(t, adcatch.Options{})
	first := ads.CreateAudience("vip")
	ads.CreateAudience("vip")
	c := newClient(t, ads, adsout.Config{})
	if r := c.Send(context.Background(), []*provider.Message{ad("a@example.com", "vip")})[0]; r.Outcome != provider.Sent {
		t.Fatalf("%+v", r)
	}
	if got := ads.Audiences(); got[0].ID != first || got[0].Size != 1 || got[1].Size != 0 {
		t.Errorf("audiences %+v", got)
	}
}

// TestDeletedAudienceIsMadeAgain: an audience deleted in Ads Manager fails
// the send that finds it gone, and the next send creates it again.
func TestDeletedAudienceIsMadeAgain(t *testing.T) {
	ads := startAds(t, adcatch.Options{})
	c := newClient(t, ads, adsout.Config{})
	msgs := []*provider.Message{ad("a@example.com", "vip")}
	if r := c.Send(context.Background(), msgs)[0]; r.Outcome != provider.Sent {
		t.Fatalf("%+v", r)
	}
	ads.DeleteAudience(ads.Audiences()[0].ID)
	if r := c.Send(context.Background(), msgs)[0]; r.Outcome != provider.Failed || !strings.Contains(r.Reason, "does not know the audience") {
		t.Errorf("after deletion: %+v", r)
	}
	if r := c.Send(context.Background(), msgs)[0]; r.Outcome != provider.Sent || !slices.Equal(ads.Members("vip"), []string{hash("a@example.com")}) {
		t.Errorf("made again: %+v, members %v", r, ads.Members("vip"))
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		fault  adcatch.Fault
		want   provider.Outcome
		code   int    // Result.Code
		reason string // in Result.Reason
		added  bool   // Meta applied the first attempt
	}{
		{"expired token", adcatch.Fault{Error: adcatch.ErrToken}, provider.Deferred, 400, "Meta error 190/463 (OAuthException)", false},
		{"permission", adcatch.Fault{Error: adcatch.ErrPermission}, provider.Deferred, 403, "lacks a permission", false},
		{"rate limit", adcatch.Fault{Error: adcatch.ErrRateLimit}, provider.Throttled, 429, "slow down", false},
		{"service", adcatch.Fault{Error: adcatch.ErrService}, provider.Deferred, 500, "failing for now", false},
		{"custom audience", adcatch.Fault{Error: adcatch.ErrCustomAud}, provider.Failed, 400, "Meta error 2650/1870034", false},
		{"blocked audience", adcatch.Fault{Error: adcatch.ErrAudience}, provider.Failed, 400, "Audience Upload Blocked", false},
		{"bare 502", adcatch.Fault{Error: &adcatch.GraphError{Status: 502, Message: "Bad Gateway"}}, provider.Deferred, 502, "502 Bad Gateway", false},
		{"dropped", adcatch.Fault{Drop: true}, provider.Unknown, 0, "await response", false},
		{"dropped after applying", adcatch.Fault{DropAfterApply: true}, provider.Unknown, 0, "await response", true},
		{"too late", adcatch.Fault{Delay: 500 * time.Millisecond}, provider.Unknown, 0, "await response", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ads := startAds(t, adcatch.Options{})
			ads.CreateAudience("aud")
			var calls atomic.Int32
			ads.SetFault(func(r adcatch.Request) adcatch.Fault {
				if r.Op == "users" && calls.Add(1) == 1 {
					return tc.fault
				}
				return adcatch.Fault{}
			})
			c := newClient(t, ads, adsout.Config{Timeout: 250 * time.Millisecond})
			msgs := []*provider.Message{ad("a@example.com", "aud"), ad("b@example.com", "aud")}
			for i, r := range c.Send(context.Background(), msgs) {
				if r.Outcome != tc.want || r.Code != tc.code || !strings.Contains(r.Reason, tc.reason) {
					t.Errorf("message %d: %+v, want %v %d %q", i, r, tc.want, tc.code, tc.reason)
				}
			}
			time.Sleep(400 * time.Millisecond) // a late request lands meanwhile
			if got := len(ads.Members("aud")) == 2; got != tc.added {
				t.Errorf("members after the first attempt: %d", len(ads.Members("aud")))
			}
			// Retrying is always safe: the set ends the same.
			for i, r := range c.Send(context.Background(), msgs) {
				if r.Outcome != provider.Sent {
					t.Errorf("retry, message %d: %+v", i, r)
				}
			}
			if diff := cmp.Diff(sorted(hash("a@example.com"), hash("b@example.com")), ads.Members("aud")); diff != "" {
				t.Errorf("members (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTokenErrorsOpenTheBreaker: a refused token is the account's problem,
// not the message's, so it counts against the provider's breaker.
func TestTokenErrorsOpenTheBreaker(t *testing.T) {
	ads := startAds(t, adcatch.Options{})
	c := newClient(t, ads, adsout.Config{AccessToken: "revoked"})
	router := route.New(prometheus.NewRegistry())
	router.Add(event.ChannelAd, "ad", c, nil, route.BreakerConfig{Failures: 2, Cooloff: time.Hour}, prometheus.NewRegistry())
	for range 2 {
		p, err := router.Pick(event.ChannelAd, nil)
		if err != nil {
			t.Fatal(err)
		}
		res := p.Send(context.Background(), []*provider.Message{ad("a@example.com", "aud")})
		if res[0].Outcome != provider.Deferred || res[0].Code != 400 || !strings.Contains(res[0].Reason, "190") {
			t.Errorf("%+v", res[0])
		}
		router.Report(p, res)
	}
	if _, err := router.Pick(event.ChannelAd, nil); !errors.Is(err, route.ErrNoProvider) {
		t.Errorf("the breaker is still closed: %v", err)
	}
	if st := ads.Stats(); st.Creates != 0 || st.Requests != 0 {
		t.Errorf("a refused token changed something: %+v", st)
	}
}

func TestThrottlingPausesTheClient(t *testing.T) {
	ads := startAds(t, adcatch.Options{})
	ads.CreateAudience("aud")
	var fault atomic.Pointer[adcatch.Fault]
	fault.Store(&adcatch.Fault{Error: adcatch.ErrRateLimit, RegainAfter: 2 * time.Minute})
	ads.SetFault(func(r adcatch.Request) adcatch.Fault {
		if r.Op != "users" {
			return adcatch.Fault{}
		}
		return *fault.Load()
	})
	msgs := []*provider.Message{ad("a@example.com", "aud")}
	// Meta's X-Business-Use-Case-Usage says how long until the account may call again.
	slow := newClient(t, ads, adsout.Config{})
	if r := slow.Send(context.Background(), msgs)[0]; r.Outcome != provider.Throttled || r.Code != 429 || !strings.Contains(r.Reason, "retry after 2m0s") {
		t.Errorf("%+v", r)
	}
	requests := ads.Stats().Requests
	if r := slow.Send(context.Background(), msgs)[0]; r.Outcome != provider.Throttled || ads.Stats().Requests != requests {
		t.Errorf("during the pause: %+v, %d requests", r, ads.Stats().Requests-requests)
	}

	fault.Store(&adcatch.Fault{Error: adcatch.ErrRateLimit, RetryAfter: time.Second})
	c := newClient(t, ads, adsout.Config{})
	if r := c.Send(context.Background(), msgs)[0]; r.Outcome != provider.Throttled || !strings.Contains(r.Reason, "retry after 1s") {
		t.Errorf("%+v", r)
	}
	fault.Store(&adcatch.Fault{})
	requests = ads.Stats().Requests
	if r := c.Send(context.Background(), msgs)[0]; r.Outcome != provider.Throttled || ads.Stats().Requests != requests {
		t.Errorf("during the pause: %+v, %d requests", r, ads.Stats().Requests-requests)
	}
	if err := c.RemoveHashed(context.Background(), "aud", []string{hash("a@example.com")}); err == nil {
		t.Error("RemoveHashed reported success while paused")
	}
	time.Sleep(1100 * time.Millisecond)
	if r := c.Send(context.Background(), msgs)[0]; r.Outcome != provider.Sent {
		t.Errorf("after the pause: %+v", r)
	}
}

func TestWrongTokenIsDeferred(t *testing.T) {
	ads := startAds(t, adcatch.Options{})
	c := newClient(t, ads, adsout.Config{AccessToken: "wrong"})
	if r := c.Send(context.Background(), []*provider.Message{ad("a@example.com", "aud")})[0]; r.Outcome != provider.Deferred || r.Code != 400 {
		t.Errorf("%+v", r)
	}
	c, err := adsout.New(adsout.Config{GraphURL: "http://127.0.0.1:1", AdAccountID: "77", AccessToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Send(context.Background(), []*provider.Message{ad("a@example.com", "aud")})[0]; r.Outcome != provider.Deferred {
		t.Errorf("closed port: %+v", r)
	}
}

// stubMeta answers every users request as Meta would a full batch of n,
// and the audience listing with one audience, without parsing anything:
// the benchmark measures the adapter, not a server.
type stubMeta struct{ n int }

func (s stubMeta) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	body := `{"data":[{"id":"42","name":"bench"}]}`
	if strings.HasSuffix(r.URL.Path, "/users") {
		body = `{"audience_id":"42","session_id":"1","num_received":` + itoa(s.n) + `,"num_invalid_entries":0,"invalid_entry_samples":{}}`
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

func itoa(n int) string {
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// BenchmarkAddMembers measures the adapter's CPU per recipient: decoding
// the payload, hashing the address, grouping, encoding Meta's form, one
// request of 10,000 entries (answered by a stub transport). cpu-ns is the
// process's CPU time, garbage collection included.
func BenchmarkAddMembers(b *testing.B) {
	const n = adsout.MaxBatch
	c, err := adsout.New(adsout.Config{GraphURL: "http://meta.invalid", AdAccountID: "77", AccessToken: "tok", Transport: stubMeta{n}})
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]*provider.Message, n)
	for i := range msgs {
		msgs[i] = ad("Customer."+itoa(i+1)+"@Example.com", "bench")
	}
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		for _, r := range c.Send(context.Background(), msgs) {
			if r.Outcome != provider.Sent {
				b.Fatal(r)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/recipient")
	b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N)/n, "cpu-ns/recipient")
}

// processCPU is the CPU time (user and system) the process has used, which
// a shared machine's load disturbs less than the wall clock.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

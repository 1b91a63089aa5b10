package adsout_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/devtools/adcatch"
	"herald/dispatch/internal/adsout"
	"herald/dispatch/internal/provider"
)

func TestNormalizeEmail(t *testing.T) {
	tests := []struct {
		in        string
		stripPlus bool
		want      string // empty: an error
	}{
		{"  Ann.Smith@Example.COM \t", false, "ann.smith@example.com"},
		{"A.n.n.Smith@Gmail.com", false, "annsmith@gmail.com"},
		{"ann.smith+shop@googlemail.com", false, "annsmith+shop@googlemail.com"},
		{"ann.smith+shop@googlemail.com", true, "annsmith@googlemail.com"},
		{"ann.smith+shop@example.com", true, "ann.smith+shop@example.com"}, // tags only go at Gmail
		{"ann@mail.gmail.com", false, "ann@mail.gmail.com"},
		{"\"odd@local\"@example.com", false, "\"odd@local\"@example.com"},
		{"ÄNN@EXAMPLE.DE", false, "änn@example.de"},
		{"", false, ""},
		{"no-at-sign", false, ""},
		{"@example.com", false, ""},
		{"ann@", false, ""},
		{"ann smith@example.com", false, ""},
		{"...@gmail.com", false, ""},
		{"+tag@gmail.com", true, ""},
	}
	for _, tc := range tests {
		got, err := adsout.NormalizeEmail(tc.in, tc.stripPlus)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("NormalizeEmail(%q, %v) = %q, %v; want %q", tc.in, tc.stripPlus, got, err, tc.want)
		}
	}
	for in, want := range map[string]string{
		"Test@Example.com ":    "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b",
		"ann.smith@gmail.com":  "c1a222ae1fca88014d03eef4e45c3dd3785f2be3f454078836a3557761df0746",
		" AnnSmith@GMAIL.com ": "c1a222ae1fca88014d03eef4e45c3dd3785f2be3f454078836a3557761df0746",
	} {
		if got, err := adsout.HashEmail(in, false); err != nil || got != want {
			t.Errorf("HashEmail(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
}

// hash is the test's own hashing of an already normalized address.
func hash(normalized string) string {
	sum := sha256.Sum256([]byte(normalized))
	return hex.EncodeToString(sum[:])
}

func startAds(t *testing.T) *adcatch.Server {
	t.Helper()
	s, err := adcatch.Start(t.Context(), adcatch.Options{APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newClient(t *testing.T, cfg adsout.Config) *adsout.Client {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = "k"
	}
	c, err := adsout.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ad(to, audience, creative string) *provider.Message {
	return &provider.Message{Key: "t/j/ad/" + to, To: to, Body: adsout.Body(adsout.Payload{Audience: audience, Creative: creative})}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestSendSyncsAudiences(t *testing.T) {
	ads := startAds(t)
	c := newClient(t, adsout.Config{BaseURL: ads.URL(), Batch: 2})
	if !c.Idempotent() || !strings.HasPrefix(c.Name(), "ads:") {
		t.Errorf("Idempotent %v, Name %q", c.Idempotent(), c.Name())
	}
	msgs := []*provider.Message{
		ad("Ann.Smith@gmail.com", "vip", "cr-1"),
		ad("bob@example.com", "vip", "cr-1"),
		ad("annsmith@GMAIL.com", "vip", "cr-1"), // the same person as the first
		ad("cy@example.org", "vip", "cr-1"),
		ad("dee@example.net", "lapsed", ""),
		ad("not an address", "vip", "cr-1"),
		{Key: "bad", To: "eve@example.com", Body: []byte(`{"audience": "../../admin"}`)},
		{Key: "worse", To: "eve@example.com", Body: []byte(`not json`)},
		ad("bob@example.com", "lapsed", ""),
	}
	res := c.Send(context.Background(), msgs)
	want := []provider.Outcome{provider.Sent, provider.Sent, provider.Sent, provider.Sent, provider.Sent,
		provider.Failed, provider.Failed, provider.Failed, provider.Sent}
	var got []provider.Outcome
	for _, r := range res {
		got = append(got, r.Outcome)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s\n%+v", diff, res)
	}
	if diff := cmp.Diff(sorted(hash("annsmith@gmail.com"), hash("bob@example.com"), hash("cy@example.org")), ads.Members("vip")); diff != "" {
		t.Errorf("vip members (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sorted(hash("dee@example.net"), hash("bob@example.com")), ads.Members("lapsed")); diff != "" {
		t.Errorf("lapsed members (-want +got):\n%s", diff)
	}
	if a := ads.Audience("vip"); !cmp.Equal(a.Creatives, []string{"cr-1"}) {
		t.Errorf("vip creatives %q", a.Creatives)
	}
	// vip has 3 distinct members in batches of 2, lapsed 2 in one.
	if st := ads.Stats(); st.Requests != 3 || st.Added != 5 || st.Unchanged != 0 {
		t.Errorf("stats %+v", st)
	}

	// Again: nothing changes, and every message is still Sent.
	for i, r := range c.Send(context.Background(), msgs) {
		if r.Outcome != want[i] {
			t.Errorf("second send, message %d: %+v", i, r)
		}
	}
	if st := ads.Stats(); st.Added != 5 || st.Unchanged != 5 {
		t.Errorf("after repeating: stats %+v", st)
	}

	if err := c.Remove(context.Background(), "vip", []string{"A.N.N.Smith@gmail.com", "nobody@example.com", "junk"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sorted(hash("bob@example.com"), hash("cy@example.org")), ads.Members("vip")); diff != "" {
		t.Errorf("vip after removal (-want +got):\n%s", diff)
	}
	if err := c.RemoveHashed(context.Background(), "never-created", []string{hash("bob@example.com")}); err != nil {
		t.Errorf("removing from an unknown audience: %v", err)
	}
	if err := c.RemoveHashed(context.Background(), "bad/id", []string{hash("bob@example.com")}); err == nil {
		t.Error("RemoveHashed accepted an audience id with a slash")
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault adcatch.Fault
		want  provider.Outcome
		added bool // the platform applied the first attempt
	}{
		{"503", adcatch.Fault{Status: 503}, provider.Deferred, false},
		{"400", adcatch.Fault{Status: 400}, provider.Failed, false},
		{"dropped", adcatch.Fault{Drop: true}, provider.Unknown, false},
		{"dropped after applying", adcatch.Fault{DropAfterApply: true}, provider.Unknown, true},
		{"too late", adcatch.Fault{Delay: 500 * time.Millisecond}, provider.Unknown, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ads := startAds(t)
			var calls atomic.Int32
			ads.SetFault(func(adcatch.Request) adcatch.Fault {
				if calls.Add(1) == 1 {
					return tc.fault
				}
				return adcatch.Fault{}
			})
			c := newClient(t, adsout.Config{BaseURL: ads.URL(), Timeout: 250 * time.Millisecond})
			msgs := []*provider.Message{ad("a@example.com", "aud", ""), ad("b@example.com", "aud", "")}
			for i, r := range c.Send(context.Background(), msgs) {
				if r.Outcome != tc.want {
					t.Errorf("message %d: %+v, want %v", i, r, tc.want)
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

func TestTooManyRequestsPausesTheClient(t *testing.T) {
	ads := startAds(t)
	var throttle atomic.Bool
	throttle.Store(true)
	ads.SetFault(func(adcatch.Request) adcatch.Fault {
		if throttle.Load() {
			return adcatch.Fault{Status: 429, RetryAfter: time.Second}
		}
		return adcatch.Fault{}
	})
	c := newClient(t, adsout.Config{BaseURL: ads.URL()})
	msgs := []*provider.Message{ad("a@example.com", "aud", "")}
	if r := c.Send(context.Background(), msgs)[0]; r.Outcome != provider.Throttled || !strings.Contains(r.Reason, "retry after 1s") {
		t.Errorf("%+v", r)
	}
	throttle.Store(false)
	if r := c.Send(context.Background(), msgs)[0]; r.Outcome != provider.Throttled || ads.Stats().Requests != 1 {
		t.Errorf("during the pause: %+v, %d requests", r, ads.Stats().Requests)
	}
	if err := c.RemoveHashed(context.Background(), "aud", []string{hash("a@example.com")}); err == nil {
		t.Error("RemoveHashed reported success while paused")
	}
	time.Sleep(1100 * time.Millisecond)
	if r := c.Send(context.Background(), msgs)[0]; r.Outcome != provider.Sent {
		t.Errorf("after the pause: %+v", r)
	}
}

func TestWrongKeyIsDeferred(t *testing.T) {
	ads := startAds(t)
	c := newClient(t, adsout.Config{BaseURL: ads.URL(), APIKey: "wrong"})
	if r := c.Send(context.Background(), []*provider.Message{ad("a@example.com", "aud", "")})[0]; r.Outcome != provider.Deferred || r.Code != 401 {
		t.Errorf("%+v", r)
	}
	c = newClient(t, adsout.Config{BaseURL: "http://127.0.0.1:1"})
	if r := c.Send(context.Background(), []*provider.Message{ad("a@example.com", "aud", "")})[0]; r.Outcome != provider.Deferred {
		t.Errorf("closed port: %+v", r)
	}
}

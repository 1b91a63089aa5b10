package route

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"herald/dispatch/internal/provider"
	"herald/shared/event"
)

// fake is a provider that answers every message with one outcome.
type fake struct {
	name    string
	outcome provider.Outcome
}

func (f *fake) Name() string     { return f.name }
func (f *fake) Idempotent() bool { return true }
func (f *fake) Send(_ context.Context, msgs []*provider.Message) []provider.Result {
	res := make([]provider.Result, len(msgs))
	for i := range res {
		res[i] = provider.Result{Outcome: f.outcome}
	}
	return res
}

func newRouter(t *testing.T) *Router {
	t.Helper()
	reg := prometheus.NewRegistry()
	r := New(reg)
	cfg := BreakerConfig{Failures: 2, Cooloff: time.Minute}
	r.Add(event.ChannelEmail, "smtp", &fake{name: "smtp:relay:25", outcome: provider.Deferred}, nil, cfg, reg)
	r.Add(event.ChannelEmail, "esp", &fake{name: "esp:api.example", outcome: provider.Deferred}, nil, cfg, reg)
	r.Add(event.ChannelOnsite, event.ChannelOnsite.ProviderKind(), &fake{name: "onsite"}, nil, cfg, reg)
	return r
}

// open fails calls to the kind's provider until its breaker opens.
func open(t *testing.T, r *Router, kind string) {
	t.Helper()
	for range 2 {
		p, err := r.Pick(event.ChannelEmail, []string{kind})
		if err != nil {
			t.Fatal(err)
		}
		r.Report(p, p.Send(context.Background(), []*provider.Message{{}}))
	}
}

func TestPickFollowsTheTenantsOrder(t *testing.T) {
	cases := []struct {
		name    string
		opened  []string
		prefer  []string
		want    string // the picked kind, or the error's text
		wantErr bool
	}{
		{name: "dispatch's order", want: "smtp"},
		{name: "dispatch's order, primary open", opened: []string{"smtp"}, want: "esp"},
		{name: "every breaker open", opened: []string{"smtp", "esp"}, want: "every provider's breaker is open", wantErr: true},
		{name: "tenant's order", prefer: []string{"esp", "smtp"}, want: "esp"},
		{name: "tenant's primary open", opened: []string{"esp"}, prefer: []string{"esp", "smtp"}, want: "smtp"},
		{name: "tenant names one, open", opened: []string{"esp"}, prefer: []string{"esp"}, want: "tenant's providers [esp] is open", wantErr: true},
		{name: "tenant names one, others open", opened: []string{"smtp"}, prefer: []string{"esp"}, want: "esp"},
		{name: "not run here", prefer: []string{"ses"}, want: "not configured here", wantErr: true},
		{name: "skips what is not run here", prefer: []string{"ses", "smtp"}, want: "smtp"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRouter(t)
			for _, kind := range c.opened {
				open(t, r, kind)
			}
			p, err := r.Pick(event.ChannelEmail, c.prefer)
			if c.wantErr {
				if !errors.Is(err, ErrNoProvider) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("Pick: %v, want ErrNoProvider saying %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Kind != c.want {
				t.Fatalf("picked %s, want %s", p.Kind, c.want)
			}
		})
	}
}

func TestPickKeepsChannelsApart(t *testing.T) {
	r := newRouter(t)
	if _, err := r.Pick(event.ChannelAd, nil); !errors.Is(err, ErrNoProvider) {
		t.Fatalf("ad channel without providers: %v, want ErrNoProvider", err)
	}
	if _, err := r.Pick(event.ChannelOnsite, []string{"smtp"}); !errors.Is(err, ErrNoProvider) {
		t.Fatalf("onsite with an email provider named: %v, want ErrNoProvider", err)
	}
	p, err := r.Pick(event.ChannelOnsite, []string{event.ChannelOnsite.ProviderKind()})
	if err != nil || p.Kind != event.ChannelOnsite.ProviderKind() {
		t.Fatalf("onsite: %v, %v", p, err)
	}
}

package deliver_test

import (
	"context"
	"slices"
	"sync"
	"time"

	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/ratelimit"
)

// fakeSender is a provider that answers each recipient as scripted and
// keeps what it was handed.
type fakeSender struct {
	name       string
	idempotent bool

	mu sync.Mutex
	// script holds each address's answers, taken in turn; once they run
	// out, the provider accepts.
	script map[string][]provider.Result
	msgs   []*provider.Message
}

func newSender(name string, idempotent bool) *fakeSender {
	return &fakeSender{name: name, idempotent: idempotent, script: map[string][]provider.Result{}}
}

// answer scripts the provider's next answers to address.
func (f *fakeSender) answer(address string, results ...provider.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script[address] = append(f.script[address], results...)
}

func (f *fakeSender) Name() string     { return f.name }
func (f *fakeSender) Idempotent() bool { return f.idempotent }

func (f *fakeSender) Send(_ context.Context, msgs []*provider.Message) []provider.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	results := make([]provider.Result, len(msgs))
	for i, m := range msgs {
		f.msgs = append(f.msgs, m)
		results[i] = provider.Result{Outcome: provider.Sent, Code: 250, Reason: "250 accepted"}
		if next := f.script[m.To]; len(next) > 0 {
			results[i], f.script[m.To] = next[0], next[1:]
		}
	}
	return results
}

// handed counts the messages the provider was handed, by address.
func (f *fakeSender) handed() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := map[string]int{}
	for _, m := range f.msgs {
		n[m.To]++
	}
	return n
}

// fakeAds is an ad platform: a sender that also takes people out of an
// audience.
type fakeAds struct {
	*fakeSender
	removed map[string][]string // by audience
}

func (a *fakeAds) Remove(_ context.Context, audience string, emails []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.removed[audience] = append(a.removed[audience], emails...)
	return nil
}

// fakeReconciler answers which Message-IDs its provider holds, or err.
type fakeReconciler struct {
	mu  sync.Mutex
	has map[string]bool
	err error
}

func (r *fakeReconciler) Found(_ context.Context, ids []string) (map[string]bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	found := map[string]bool{}
	for _, id := range ids {
		found[id] = r.has[id]
	}
	return found, nil
}

// fakeLimits hands out the tokens it is given per bucket (buckets it was
// given none for are unlimited) and keeps what it was told.
type fakeLimits struct {
	mu sync.Mutex
	// tokens left per bucket.
	tokens map[string]int
	// fail, per bucket, is the error a Take of it returns.
	fail      map[string]error
	ensured   []ratelimit.Bucket
	taken     [][]string
	throttled []string
}

func newLimits() *fakeLimits {
	return &fakeLimits{tokens: map[string]int{}, fail: map[string]error{}}
}

func (l *fakeLimits) Ensure(_ context.Context, buckets ...ratelimit.Bucket) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ensured = append(l.ensured, buckets...)
	return nil
}

func (l *fakeLimits) Take(_ context.Context, buckets []string, n int, _ time.Duration) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.taken = append(l.taken, slices.Clone(buckets))
	for _, b := range buckets {
		if err := l.fail[b]; err != nil {
			return 0, err
		}
		if left, ok := l.tokens[b]; ok {
			n = min(n, left)
		}
	}
	for _, b := range buckets {
		if _, ok := l.tokens[b]; ok {
			l.tokens[b] -= n
		}
	}
	return n, nil
}

func (l *fakeLimits) Throttled(_ context.Context, bucket string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.throttled = append(l.throttled, bucket)
	return nil
}

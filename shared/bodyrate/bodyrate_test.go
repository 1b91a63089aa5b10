package bodyrate_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"herald/shared/bodyrate"
)

// outcome is what the handler saw.
type outcome struct {
	body    string
	err     error
	ctxDone bool
}

func serve(t *testing.T, rule bodyrate.Rule, after func()) (string, chan outcome) {
	t.Helper()
	seen := make(chan outcome, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = bodyrate.Limit(w, r, rule)
		b, err := io.ReadAll(r.Body)
		if after != nil && err == nil {
			// Readers such as decoders may read again after the end.
			if _, err := r.Body.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("read after the end: %v", err)
			}
			after()
		}
		seen <- outcome{body: string(b), err: err, ctxDone: r.Context().Err() != nil}
		if err != nil {
			w.WriteHeader(http.StatusRequestTimeout)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, seen
}

// A body that stops arriving is ended by the server once it falls behind.
func TestTrickleIsEnded(t *testing.T) {
	url, seen := serve(t, bodyrate.Rule{BytesPerSecond: 1 << 20, Grace: 50 * time.Millisecond}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("a few bytes, then nothing")) }()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, pr)
	go func() {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case o := <-seen:
		if !errors.Is(o.err, bodyrate.ErrTooSlow) {
			t.Fatalf("handler read %q, %v; want ErrTooSlow", o.body, o.err)
		}
	case <-ctx.Done():
		t.Fatal("the stalled body was never ended")
	}
}

// A body read to its end leaves no deadline behind, even if read again: the
// handler may take longer than the rule would have allowed the body, and
// its request is not cancelled for it.
func TestNoDeadlineAfterTheBody(t *testing.T) {
	rule := bodyrate.Rule{BytesPerSecond: 1 << 20, Grace: 20 * time.Millisecond}
	url, seen := serve(t, rule, func() { time.Sleep(10 * rule.Grace) })
	for _, body := range []string{"", "small", strings.Repeat("x", 1<<20)} {
		resp, err := http.Post(url, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		o := <-seen
		if o.err != nil || o.body != body || o.ctxDone || resp.StatusCode != 200 {
			t.Fatalf("body of %d bytes: read %d bytes, %v, request cancelled: %v, status %d", len(body), len(o.body), o.err, o.ctxDone, resp.StatusCode)
		}
	}
}

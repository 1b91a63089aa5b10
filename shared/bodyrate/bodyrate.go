// Package bodyrate ends request bodies that arrive too slowly. A server's
// ReadTimeout bounds the whole request, which a large upload may rightly
// need a long time for; with no bound at all, a client that sends a byte
// every few seconds keeps its handler, and whatever the handler holds, for
// as long as it likes. A minimum rate lets a body take the time its size
// needs and ends a trickle: n bytes after the body began, the next must
// arrive within Grace + n/BytesPerSecond of the start, or the read fails
// with ErrTooSlow.
//
// The deadline is the connection's read deadline, set through
// http.ResponseController, so a read blocked on a silent client is ended
// by the server, not left to the handler.
package bodyrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// Rule is a minimum arrival rate for request bodies.
type Rule struct {
	// BytesPerSecond is the slowest average rate accepted after Grace;
	// 0 disables the rule.
	BytesPerSecond float64
	// Grace is how long a body may take before the rate applies.
	Grace time.Duration
}

// ErrTooSlow is wrapped by the error a body's read returns once the body
// has fallen behind the rule.
var ErrTooSlow = errors.New("request body arrived too slowly")

// Limit returns r with rule applied to its body, read through w's
// connection.
func Limit(w http.ResponseWriter, r *http.Request, rule Rule) *http.Request {
	if rule.BytesPerSecond <= 0 || r.Body == nil || r.Body == http.NoBody {
		return r
	}
	b := &reader{body: r.Body, rc: http.NewResponseController(w), rule: rule, start: time.Now()}
	r = r.WithContext(context.WithValue(r.Context(), readerKey{}, b))
	r.Body = b
	return r
}

type readerKey struct{}

// Exceeded reports whether the body of r, or of the request r was made
// from, has fallen behind its rule. What a reader of the body reports may
// be another error: the server cancels the request when the read fails,
// and an HTTP client sending the body on (a proxy) may report the
// cancellation first.
func Exceeded(r *http.Request) bool {
	b, ok := r.Context().Value(readerKey{}).(*reader)
	return ok && (b.exceeded.Load() || !b.ended.Load() && time.Now().After(b.due()))
}

type reader struct {
	body     io.ReadCloser
	rc       *http.ResponseController
	rule     Rule
	start    time.Time
	n        atomic.Int64
	off      bool // the connection takes no deadline, or the body has ended
	ended    atomic.Bool
	exceeded atomic.Bool
}

// due is when the next byte must have arrived.
func (r *reader) due() time.Time {
	return r.start.Add(r.rule.Grace + time.Duration(float64(r.n.Load())/r.rule.BytesPerSecond*float64(time.Second)))
}

func (r *reader) Read(p []byte) (int, error) {
	if !r.off {
		if err := r.rc.SetReadDeadline(r.due()); err != nil {
			r.off = true // not a real connection (a test recorder): nothing to enforce
		}
	}
	n, err := r.body.Read(p)
	total := r.n.Add(int64(n))
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		r.exceeded.Store(true)
		return n, fmt.Errorf("%w: %d bytes in %s, less than %g a second", ErrTooSlow, total, time.Since(r.start).Round(time.Millisecond), r.rule.BytesPerSecond)
	case err != nil:
		r.ended.Store(true)
		if !r.off {
			// The body is over. From here on the server reads the
			// connection to notice the client going away, and a deadline
			// set now would read as that and cancel the request: set none
			// again, and clear this one.
			r.off = true
			_ = r.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

func (r *reader) Close() error { return r.body.Close() }

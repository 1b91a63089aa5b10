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
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
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

// Limit applies rule to r's body, read through w's connection.
func Limit(w http.ResponseWriter, r *http.Request, rule Rule) {
	if rule.BytesPerSecond <= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	r.Body = &reader{body: r.Body, rc: http.NewResponseController(w), rule: rule, start: time.Now()}
}

type reader struct {
	body  io.ReadCloser
	rc    *http.ResponseController
	rule  Rule
	start time.Time
	n     int64
	off   bool // the connection takes no deadline, or the body has ended
}

func (r *reader) Read(p []byte) (int, error) {
	if !r.off {
		due := r.start.Add(r.rule.Grace + time.Duration(float64(r.n)/r.rule.BytesPerSecond*float64(time.Second)))
		if err := r.rc.SetReadDeadline(due); err != nil {
			r.off = true // not a real connection (a test recorder): nothing to enforce
		}
	}
	n, err := r.body.Read(p)
	r.n += int64(n)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n, fmt.Errorf("%w: %d bytes in %s, less than %g a second", ErrTooSlow, r.n, time.Since(r.start).Round(time.Millisecond), r.rule.BytesPerSecond)
	case err != nil && !r.off:
		// The body is over. From here on the server reads the connection
		// to notice the client going away, and a deadline set now would
		// read as that and cancel the request: set none again, and clear
		// this one.
		r.off = true
		_ = r.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (r *reader) Close() error { return r.body.Close() }

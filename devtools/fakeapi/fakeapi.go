// Package fakeapi is what the fake provider APIs that tests and the local
// stack talk to (the ESP and ad platform catchers) share: serving on a
// port, JSON answers, and the faults a test injects before a request is
// handled.
package fakeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Server serves a handler on a port.
type Server struct {
	// URL is the base URL, "http://host:port".
	URL    string
	srv    *http.Server
	served chan struct{}
}

// Listen binds addr (":0" picks a port) and serves h until Close.
func Listen(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &Server{
		URL:    "http://" + ln.Addr().String(),
		served: make(chan struct{}),
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve", "err", err)
		}
	}()
	return s, nil
}

// Close stops serving and closes open connections.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.served
	return err
}

// Fault is what happens to a request before it is handled.
type Fault struct {
	// Delay holds the request this long first.
	Delay time.Duration
	// Status answers with this status instead of handling the request.
	Status int
	// RetryAfter is sent in Retry-After (whole seconds, rounded up) with
	// Status.
	RetryAfter time.Duration
	// Drop closes the connection without an answer instead of handling
	// the request.
	Drop bool
}

// Apply carries out f: it waits out the delay (answering 503 if closing
// closes meanwhile), then drops the connection or answers Status. It
// reports whether it answered, in which case the request is not handled.
func Apply(w http.ResponseWriter, f Fault, closing <-chan struct{}) bool {
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-closing:
			t.Stop()
			WriteError(w, http.StatusServiceUnavailable, "shutting down")
			return true
		}
	}
	switch {
	case f.Drop:
		Drop(w)
		return true
	case f.Status != 0:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
		}
		WriteError(w, f.Status, http.StatusText(f.Status))
		return true
	}
	return false
}

// Drop closes the request's connection without an answer.
func Drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // HTTP/2: the stream is reset instead
	}
	_ = conn.Close()
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers {"error":{"message":msg}}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, map[string]map[string]string{"error": {"message": msg}})
}

package adcatch

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"herald/devtools/fakeapi"
)

func (s *Server) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/audiences/{audience}/members", s.serveMembers)
	mux.HandleFunc("GET /v1/audiences/{audience}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Audience(r.PathValue("audience")))
	})
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// validID reports whether an audience or creative id is 1 to 128 letters,
// digits, '-' or '_'.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (s *Server) serveMembers(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Done()
	if key := s.opts.APIKey; key != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
			writeError(w, http.StatusUnauthorized, "missing or wrong API key")
			return
		}
	}
	id := r.PathValue("audience")
	if !validID(id) {
		writeError(w, http.StatusBadRequest, "audience id must be 1 to 128 letters, digits, '-' or '_'")
		return
	}
	var req MembersRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBytes)).Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request larger than "+strconv.Itoa(MaxRequestBytes)+" bytes")
			return
		}
		writeError(w, http.StatusBadRequest, "malformed request: "+err.Error())
		return
	}
	switch {
	case req.Operation != Add && req.Operation != Remove:
		writeError(w, http.StatusBadRequest, `operation must be "add" or "remove"`)
		return
	case len(req.EmailSHA256) == 0 || len(req.EmailSHA256) > s.opts.MaxMembers:
		writeError(w, http.StatusBadRequest, "a request carries 1 to "+strconv.Itoa(s.opts.MaxMembers)+" members")
		return
	case req.CreativeID != "" && !validID(req.CreativeID):
		writeError(w, http.StatusBadRequest, "creative id must be 1 to 128 letters, digits, '-' or '_'")
		return
	}

	s.mu.Lock()
	s.stats.Requests++
	fault := s.fault
	s.mu.Unlock()
	var f Fault
	if fault != nil {
		f = fault(Request{Audience: id, Operation: req.Operation, Members: len(req.EmailSHA256)})
	}
	if f != (Fault{}) {
		s.mu.Lock()
		s.stats.Faulted++
		s.mu.Unlock()
	}
	if fakeapi.Apply(w, fakeapi.Fault{Delay: f.Delay, Status: f.Status, RetryAfter: f.RetryAfter, Drop: f.Drop}, s.closing) {
		return
	}
	resp := s.apply(id, &req)
	if f.DropAfterApply {
		drop(w)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// drop closes the client's connection without an answer.

var (
	drop       = fakeapi.Drop
	writeJSON  = fakeapi.WriteJSON
	writeError = fakeapi.WriteError
)

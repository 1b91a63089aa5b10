package espcatch

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
	mux.HandleFunc("POST /v1/send", s.serveSend)
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("GET /api/messages", s.serveMessages)
	mux.HandleFunc("POST /api/lookup", s.serveLookup)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func (s *Server) serveSend(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Done()
	if key := s.opts.APIKey; key != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
			writeError(w, http.StatusUnauthorized, "missing or wrong API key")
			return
		}
	}
	var req SendRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes))
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request larger than "+strconv.FormatInt(s.opts.MaxRequestBytes, 10)+" bytes")
			return
		}
		writeError(w, http.StatusBadRequest, "malformed request: "+err.Error())
		return
	}
	if len(req.Messages) == 0 || len(req.Messages) > s.opts.MaxBatch {
		writeError(w, http.StatusBadRequest, "a request carries 1 to "+strconv.Itoa(s.opts.MaxBatch)+" messages")
		return
	}

	s.mu.Lock()
	s.stats.Requests++
	fault := s.fault
	s.mu.Unlock()
	var f Fault
	if fault != nil {
		keys := make([]string, len(req.Messages))
		for i, m := range req.Messages {
			keys[i] = m.IdempotencyKey
		}
		f = fault(Request{Keys: keys})
	}
	if f != (Fault{}) {
		s.mu.Lock()
		s.stats.Faulted++
		s.mu.Unlock()
	}
	if fakeapi.Apply(w, fakeapi.Fault{Delay: f.Delay, Status: f.Status, RetryAfter: f.RetryAfter, Drop: f.Drop}, s.closing) {
		return
	}
	resp := s.handle(&req)
	if f.DropAfterAccept {
		drop(w)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// drop closes the client's connection without an answer.

func (s *Server) serveMessages(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit must be between 1 and 10000")
			return
		}
		limit = n
	}
	to := r.URL.Query().Get("to")
	all := s.Messages()
	var out []Message
	for i := len(all) - 1; i >= 0 && len(out) < limit; i-- {
		if to == "" || strings.EqualFold(all[i].To, to) {
			out = append(out, all[i])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": out})
}

func (s *Server) serveLookup(w http.ResponseWriter, r *http.Request) {
	var req struct {
		MessageIDs []string `json:"message_ids"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "malformed request: "+err.Error())
		return
	}
	found := []string{}
	s.mu.Lock()
	for _, id := range req.MessageIDs {
		if s.byMsgID[strings.Trim(id, "<> ")] {
			found = append(found, id)
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string][]string{"found": found})
}

var (
	drop       = fakeapi.Drop
	writeJSON  = fakeapi.WriteJSON
	writeError = fakeapi.WriteError
)

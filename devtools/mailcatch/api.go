package mailcatch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Limits of the JSON API.
const (
	// MaxLookupIDs is the most Message-IDs one lookup request may ask about.
	MaxLookupIDs = 10000
	// MaxLookupBytes is the largest lookup request body accepted.
	MaxLookupBytes = 1 << 20
	// DefaultListLimit and MaxListLimit bound /api/messages.
	DefaultListLimit = 100
	MaxListLimit     = 10000
)

// MessageList is the response of GET /api/messages.
type MessageList struct {
	// Messages are the newest matching messages, oldest first.
	Messages []Message `json:"messages"`
	// Total is how many messages match, however many were returned.
	Total int `json:"total"`
}

// LookupRequest is the body of POST /api/lookup. A missing or null
// message_ids asks about nothing, as an empty list does; a client that
// encodes an empty Go slice sends null.
type LookupRequest struct {
	MessageIDs []string `json:"message_ids"`
}

// LookupResponse is the response of POST /api/lookup.
type LookupResponse struct {
	// Found lists the requested Message-IDs that were accepted, spelled and
	// ordered as in the request, each once.
	Found []string `json:"found"`
}

// Handler returns the JSON API; the caller serves it:
//
//	GET  /api/stats                       Stats
//	GET  /api/messages?to=ADDR&limit=N    MessageList: the newest N (default
//	                                      100, at most 10000) messages, to
//	                                      ADDR if given (case-insensitive)
//	POST /api/lookup                      LookupRequest in, LookupResponse out
//
// The lookup is how a sender reconciles sends whose outcome it does not know
// (a connection dropped after DATA, say): it asks whether those Message-IDs
// arrived. Bad requests get status 400 and {"error":{"message":"..."}}.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/stats", s.serveStats)
	mux.HandleFunc("/api/messages", s.serveMessages)
	mux.HandleFunc("/api/lookup", s.serveLookup)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	return mux
}

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) serveMessages(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodGet) {
		return
	}
	q := r.URL.Query()
	limit := DefaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a whole number from 1 to %d", MaxListLimit))
			return
		}
		limit = n
	}
	to := strings.TrimSpace(q.Get("to"))
	writeJSON(w, http.StatusOK, s.list(to, limit))
}

// list returns the newest limit messages addressed to to (any, if empty),
// oldest first, and how many match in all.
func (s *Server) list(to string, limit int) MessageList {
	chunks := s.snapshot()
	var picked []*record
	total := 0
	for c := len(chunks) - 1; c >= 0; c-- {
		for i := len(chunks[c]) - 1; i >= 0; i-- {
			rec := &chunks[c][i]
			if to != "" && !hasRecipient(rec.to, to) {
				continue
			}
			total++
			if len(picked) < limit {
				picked = append(picked, rec)
			}
		}
	}
	out := MessageList{Messages: make([]Message, 0, len(picked)), Total: total}
	for i := len(picked) - 1; i >= 0; i-- {
		out.Messages = append(out.Messages, s.message(picked[i]))
	}
	return out
}

func hasRecipient(rcpts []string, addr string) bool {
	for _, r := range rcpts {
		if strings.EqualFold(r, addr) {
			return true
		}
	}
	return false
}

func (s *Server) serveLookup(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) {
		return
	}
	var req LookupRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxLookupBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("request body is larger than %d bytes", MaxLookupBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "request body is not a lookup request: "+err.Error())
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "request body has data after the JSON object")
		return
	}
	if len(req.MessageIDs) > MaxLookupIDs {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("message_ids has %d entries; at most %d are allowed", len(req.MessageIDs), MaxLookupIDs))
		return
	}
	writeJSON(w, http.StatusOK, LookupResponse{Found: s.lookup(req.MessageIDs)})
}

// lookup returns the ids that were accepted, in the order given, each once.
func (s *Server) lookup(ids []string) []string {
	found := make([]string, 0)
	reported := make(map[string]struct{})
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, raw := range ids {
		id := normalizeID(raw)
		if _, ok := s.ids[id]; !ok || id == "" {
			continue
		}
		if _, dup := reported[id]; dup {
			continue
		}
		reported[id] = struct{}{}
		found = append(found, raw)
	}
	return found
}

// allowMethod answers 405 and reports false unless r uses method.
func allowMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	w.Header().Set("Allow", method)
	writeError(w, http.StatusMethodNotAllowed, "use "+method)
	return false
}

type apiError struct {
	Error struct {
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	var body apiError
	body.Error.Message = msg
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The status line is out; a failed write means the client went away.
	_ = json.NewEncoder(w).Encode(v)
}

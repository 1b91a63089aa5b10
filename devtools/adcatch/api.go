package adcatch

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	"herald/devtools/fakeapi"
)

// fileSources are the customer_file_source values Meta accepts.
var fileSources = map[string]bool{"USER_PROVIDED_ONLY": true, "PARTNER_PROVIDED_ONLY": true, "BOTH_USER_AND_PARTNER_PROVIDED": true}

func (s *Server) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{version}/{account}/customaudiences", s.serveList)
	mux.HandleFunc("POST /{version}/{account}/customaudiences", s.serveCreate)
	mux.HandleFunc("POST /{version}/{audience}/users", s.serveUsers)
	mux.HandleFunc("DELETE /{version}/{audience}/users", s.serveUsers)
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, r *http.Request) {
		fakeapi.WriteJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeGraphError(w, &GraphError{Message: "Unknown path components: " + r.URL.Path, Code: 2500})
	})
	return mux
}

// writeGraphError answers as the Graph API does.
func writeGraphError(w http.ResponseWriter, e *GraphError) {
	status, typ := e.Status, e.Type
	if status == 0 {
		status = http.StatusBadRequest
	}
	if typ == "" {
		typ = "OAuthException"
	}
	var trace [9]byte
	_, _ = rand.Read(trace[:])
	body := map[string]any{"message": e.Message, "type": typ, "code": e.Code, "fbtrace_id": base64.RawURLEncoding.EncodeToString(trace[:])}
	if e.Subcode != 0 {
		body["error_subcode"] = e.Subcode
	}
	fakeapi.WriteJSON(w, status, map[string]any{"error": body})
}

func invalidParam(msg string) *GraphError {
	return &GraphError{Message: "(#100) " + msg, Code: 100}
}

// begin checks the request's version, token and form; it answers and
// returns false when one is wrong.
func (s *Server) begin(w http.ResponseWriter, r *http.Request) bool {
	v := r.PathValue("version")
	if major, minor, ok := strings.Cut(strings.TrimPrefix(v, "v"), "."); !ok || !strings.HasPrefix(v, "v") || !number(major) || !number(minor) {
		writeGraphError(w, &GraphError{Message: "Unknown path components: /" + v, Code: 2500})
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
	method := r.Method
	if method == http.MethodDelete {
		r.Method = http.MethodPost // net/http reads the form body of POST, PUT and PATCH only
	}
	err := r.ParseForm()
	r.Method = method
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeGraphError(w, &GraphError{Status: http.StatusRequestEntityTooLarge, Message: "request larger than " + strconv.Itoa(MaxRequestBytes) + " bytes", Code: 1})
			return false
		}
		writeGraphError(w, invalidParam("malformed parameters: "+err.Error()))
		return false
	}
	token, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !bearer {
		token = r.Form.Get("access_token")
	}
	if token == "" {
		writeGraphError(w, &GraphError{Message: "An active access token must be used to query information about the current user.", Code: 2500})
		return false
	}
	if want := s.opts.AccessToken; want != "" && subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
		writeGraphError(w, &GraphError{Message: "Invalid OAuth access token - Cannot parse access token", Code: 190})
		return false
	}
	return true
}

// account checks the ad account of the path.
func (s *Server) account(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("account") != "act_"+s.opts.AdAccountID {
		writeGraphError(w, &GraphError{Message: "Unsupported request. Object with ID '" + r.PathValue("account") + "' does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
			Type: "GraphMethodException", Code: 100, Subcode: 33})
		return false
	}
	return true
}

// faulted asks the fault hook about req and carries out what it says
// before the request is applied. It reports whether it answered.
func (s *Server) faulted(w http.ResponseWriter, req Request) (Fault, bool) {
	s.mu.Lock()
	if req.Op == "users" {
		s.stats.Requests++
	}
	hook := s.fault
	s.mu.Unlock()
	var f Fault
	if hook != nil {
		f = hook(req)
	}
	if f == (Fault{}) {
		return f, false
	}
	s.mu.Lock()
	s.stats.Faulted++
	s.mu.Unlock()
	if fakeapi.Apply(w, fakeapi.Fault{Delay: f.Delay, Drop: f.Drop}, s.closing) {
		return f, true
	}
	if f.Error != nil {
		if f.RegainAfter > 0 {
			usage, _ := json.Marshal(map[string][]map[string]any{s.opts.AdAccountID: {{"type": "ads_management", "call_count": 100,
				"total_cputime": 20, "total_time": 20, "estimated_time_to_regain_access": int(math.Ceil(f.RegainAfter.Minutes()))}}})
			w.Header().Set("X-Business-Use-Case-Usage", string(usage))
		}
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
		}
		writeGraphError(w, f.Error)
		return f, true
	}
	return f, false
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Done()
	if !s.begin(w, r) || !s.account(w, r) {
		return
	}
	limit := s.opts.PageSize
	if v := r.Form.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			writeGraphError(w, invalidParam("Param limit must be a positive integer"))
			return
		}
		limit = min(n, s.opts.PageSize)
	}
	start := 0
	if v := r.Form.Get("after"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		n, err2 := strconv.Atoi(string(b))
		if err != nil || err2 != nil || n < 0 {
			writeGraphError(w, invalidParam("Invalid cursor"))
			return
		}
		start = n
	}
	fields := strings.Split(r.Form.Get("fields"), ",")
	if _, done := s.faulted(w, Request{Op: "list", Method: r.Method}); done {
		return
	}
	s.mu.Lock()
	s.stats.Lists++
	var data []map[string]any
	end := min(start+limit, len(s.audiences))
	for _, a := range s.audiences[min(start, end):end] {
		entry := map[string]any{"id": a.ID}
		for _, f := range fields {
			switch f {
			case "name":
				entry["name"] = a.Name
			case "subtype":
				entry["subtype"] = a.Subtype
			case "customer_file_source":
				entry["customer_file_source"] = a.CustomerFileSource
			}
		}
		data = append(data, entry)
	}
	more := end < len(s.audiences)
	s.mu.Unlock()
	resp := map[string]any{"data": data}
	if data == nil {
		resp["data"] = []any{}
	}
	if len(data) > 0 {
		cursors := map[string]string{"before": base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(start))),
			"after": base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))}
		paging := map[string]any{"cursors": cursors}
		if more {
			paging["next"] = "http://" + r.Host + r.URL.Path + "?after=" + cursors["after"]
		}
		resp["paging"] = paging
	}
	fakeapi.WriteJSON(w, http.StatusOK, resp)
}

func (s *Server) serveCreate(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Done()
	if !s.begin(w, r) || !s.account(w, r) {
		return
	}
	name, subtype, source := r.Form.Get("name"), r.Form.Get("subtype"), r.Form.Get("customer_file_source")
	switch {
	case name == "":
		writeGraphError(w, invalidParam("The parameter name is required"))
		return
	case subtype != "CUSTOM":
		writeGraphError(w, invalidParam("Param subtype must be CUSTOM for a customer file audience"))
		return
	case !fileSources[source]:
		writeGraphError(w, invalidParam("Param customer_file_source must be one of {USER_PROVIDED_ONLY, PARTNER_PROVIDED_ONLY, BOTH_USER_AND_PARTNER_PROVIDED}"))
		return
	}
	f, done := s.faulted(w, Request{Op: "create", Method: r.Method})
	if done {
		return
	}
	s.mu.Lock()
	s.stats.Creates++
	a := s.create(name, source)
	s.mu.Unlock()
	if f.DropAfterApply {
		fakeapi.Drop(w)
		return
	}
	fakeapi.WriteJSON(w, http.StatusOK, map[string]string{"id": a.ID})
}

// payload is the users request's payload parameter.
type payload struct {
	Schema json.RawMessage   `json:"schema"`
	Data   []json.RawMessage `json:"data"`
}

// entries checks a payload and returns its entries.
func (p *payload) entries() ([]string, *GraphError) {
	var one string
	var list []string
	multi := false
	switch {
	case json.Unmarshal(p.Schema, &one) == nil:
	case json.Unmarshal(p.Schema, &list) == nil && len(list) == 1:
		one, multi = list[0], true
	default:
		return nil, invalidParam("Invalid schema: want \"EMAIL_SHA256\"")
	}
	if one != "EMAIL_SHA256" {
		return nil, invalidParam("The schema " + one + " is not supported here: want EMAIL_SHA256")
	}
	out := make([]string, len(p.Data))
	for i, d := range p.Data {
		var v string
		if multi {
			var row []string
			if json.Unmarshal(d, &row) != nil || len(row) != 1 {
				return nil, invalidParam("Invalid data: each row must have one value per schema field")
			}
			v = row[0]
		} else if json.Unmarshal(d, &v) != nil {
			return nil, invalidParam("Invalid data: entries must be strings")
		}
		out[i] = v
	}
	return out, nil
}

func (s *Server) serveUsers(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Done()
	if !s.begin(w, r) {
		return
	}
	id := r.PathValue("audience")
	var p payload
	if err := json.Unmarshal([]byte(r.Form.Get("payload")), &p); err != nil {
		writeGraphError(w, invalidParam("Param payload must be a JSON object"))
		return
	}
	entries, gerr := p.entries()
	switch {
	case gerr != nil:
		writeGraphError(w, gerr)
		return
	case len(entries) == 0:
		writeGraphError(w, invalidParam("Param payload[data] must be a non-empty array"))
		return
	case len(entries) > s.opts.MaxEntries:
		writeGraphError(w, invalidParam("The number of entries in payload[data] ("+strconv.Itoa(len(entries))+") exceeds "+strconv.Itoa(s.opts.MaxEntries)))
		return
	}
	var sess Session
	if v := r.Form.Get("session"); v != "" {
		if json.Unmarshal([]byte(v), &sess) != nil || sess.ID <= 0 || sess.Seq <= 0 {
			writeGraphError(w, invalidParam("Param session must have a positive session_id and batch_seq"))
			return
		}
	}
	s.mu.Lock()
	a := s.byID(id)
	s.mu.Unlock()
	if a == nil {
		writeGraphError(w, &GraphError{Message: "Unsupported " + strings.ToLower(r.Method) + " request. Object with ID '" + id + "' does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
			Type: "GraphMethodException", Code: 100, Subcode: 33})
		return
	}
	f, done := s.faulted(w, Request{Op: "users", Method: r.Method, Audience: id, Entries: len(entries), Session: sess})
	if done {
		return
	}
	resp := s.apply(a, r.Method == http.MethodDelete, entries, sess)
	if f.DropAfterApply {
		fakeapi.Drop(w)
		return
	}
	fakeapi.WriteJSON(w, http.StatusOK, resp)
}

// apply changes an audience's members and answers as Meta does.
func (s *Server) apply(a *audience, remove bool, entries []string, sess Session) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.ID == 0 {
		sess.ID = s.nextID
	}
	s.sessions = append(s.sessions, sess)
	invalid := map[string]string{}
	n := 0
	for _, h := range entries {
		if !isSHA256Hex(h) {
			n++
			s.stats.Invalid++
			if len(invalid) < 10 {
				invalid[h] = "invalid hash: want 64 hex digits of SHA-256"
			}
			continue
		}
		_, member := a.members[h]
		switch {
		case !remove && !member:
			a.members[h] = struct{}{}
			s.stats.Added++
		case remove && member:
			delete(a.members, h)
			s.stats.Removed++
		default:
			s.stats.Unchanged++
		}
	}
	return map[string]any{"audience_id": a.ID, "session_id": strconv.FormatInt(sess.ID, 10), "num_received": len(entries),
		"num_invalid_entries": n, "invalid_entry_samples": invalid}
}

// isSHA256Hex reports whether h is 64 hex digits. Meta takes either case.
func isSHA256Hex(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

func number(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

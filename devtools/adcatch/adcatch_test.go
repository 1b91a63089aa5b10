package adcatch_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/devtools/adcatch"
)

func start(t *testing.T, opts adcatch.Options) *adcatch.Server {
	t.Helper()
	s, err := adcatch.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// h makes a valid-looking hash from a letter.
func h(c string) string { return strings.Repeat(c, 64) }

// answer is a response: its status, headers and JSON body.
type answer struct {
	status int
	header http.Header
	body   map[string]any
}

// graphError is the error object of an answer, nil if it has none.
func (a answer) graphError() map[string]any {
	e, _ := a.body["error"].(map[string]any)
	return e
}

func (a answer) code() int {
	c, _ := a.graphError()["code"].(float64)
	return int(c)
}

func do(t *testing.T, s *adcatch.Server, method, path, token string, form url.Values) (answer, error) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, s.URL()+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	if err := json.NewDecoder(resp.Body).Decode(&a.body); err != nil {
		t.Fatalf("%s %s: %d, body not JSON: %v", method, path, resp.StatusCode, err)
	}
	return a, nil
}

func users(hashes ...string) url.Values {
	p, _ := json.Marshal(map[string]any{"schema": "EMAIL_SHA256", "data": hashes})
	return url.Values{"payload": {string(p)}}
}

func create(t *testing.T, s *adcatch.Server, name string) string {
	t.Helper()
	a, err := do(t, s, "POST", "/v25.0/act_77/customaudiences", "tok", url.Values{"name": {name}, "subtype": {"CUSTOM"}, "customer_file_source": {"USER_PROVIDED_ONLY"}})
	if err != nil || a.status != 200 {
		t.Fatalf("create %s: %+v %v", name, a, err)
	}
	return a.body["id"].(string)
}

func TestMembershipIsASet(t *testing.T) {
	s := start(t, adcatch.Options{AccessToken: "tok", AdAccountID: "77"})
	vip := create(t, s, "vip")
	multi, _ := json.Marshal(map[string]any{"schema": []string{"EMAIL_SHA256"}, "data": [][]string{{h("b")}, {h("c")}}})
	steps := []struct {
		method string
		form   url.Values
		want   map[string]any
	}{
		{"POST", users(h("a"), h("b"), "NOT-HEX", h("a")),
			map[string]any{"num_received": 4.0, "num_invalid_entries": 1.0, "invalid_entry_samples": map[string]any{"NOT-HEX": "invalid hash: want 64 hex digits of SHA-256"}}},
		{"POST", url.Values{"payload": {string(multi)}, "session": {`{"session_id":9,"batch_seq":1,"last_batch_flag":true,"estimated_num_total":2}`}},
			map[string]any{"num_received": 2.0, "num_invalid_entries": 0.0, "invalid_entry_samples": map[string]any{}, "session_id": "9"}},
		{"DELETE", users(h("a"), h("d")),
			map[string]any{"num_received": 2.0, "num_invalid_entries": 0.0, "invalid_entry_samples": map[string]any{}}},
	}
	for i, st := range steps {
		a, err := do(t, s, st.method, "/v25.0/"+vip+"/users", "tok", st.form)
		if err != nil || a.status != 200 || a.body["audience_id"] != vip || a.body["session_id"] == "" {
			t.Fatalf("step %d: %+v %v", i, a, err)
		}
		if st.want["session_id"] == nil {
			delete(a.body, "session_id")
		}
		delete(a.body, "audience_id")
		if diff := cmp.Diff(st.want, a.body); diff != "" {
			t.Errorf("step %d (-want +got):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff([]string{h("b"), h("c")}, s.Members("vip")); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
	if !s.Has("vip", h("c")) || s.Has("vip", h("a")) || s.Has("other", h("a")) {
		t.Error("Has is wrong")
	}
	want := []adcatch.Audience{{ID: vip, Name: "vip", Subtype: "CUSTOM", CustomerFileSource: "USER_PROVIDED_ONLY", Size: 2}}
	if diff := cmp.Diff(want, s.Audiences()); diff != "" {
		t.Errorf("audiences (-want +got):\n%s", diff)
	}
	if st := s.Stats(); st != (adcatch.Stats{Requests: 3, Creates: 1, Added: 3, Removed: 1, Unchanged: 3, Invalid: 1}) {
		t.Errorf("stats %+v", st)
	}
	if diff := cmp.Diff(adcatch.Session{ID: 9, Seq: 1, Last: true, Total: 2}, s.Sessions()[1]); diff != "" {
		t.Errorf("session (-want +got):\n%s", diff)
	}
}

func TestListingPages(t *testing.T) {
	s := start(t, adcatch.Options{AccessToken: "tok", AdAccountID: "77", PageSize: 2})
	var ids []string
	for _, n := range []string{"a", "b", "c"} {
		ids = append(ids, create(t, s, n))
	}
	var got []string
	q := url.Values{"fields": {"id,name"}, "limit": {"500"}}
	for page := 0; ; page++ {
		a, err := do(t, s, "GET", "/v25.0/act_77/customaudiences?"+q.Encode(), "tok", nil)
		if err != nil || a.status != 200 || page > 2 {
			t.Fatalf("page %d: %+v %v", page, a, err)
		}
		for _, d := range a.body["data"].([]any) {
			got = append(got, d.(map[string]any)["id"].(string)+"="+d.(map[string]any)["name"].(string))
		}
		paging, _ := a.body["paging"].(map[string]any)
		if paging["next"] == nil {
			break
		}
		q.Set("after", paging["cursors"].(map[string]any)["after"].(string))
	}
	if diff := cmp.Diff([]string{ids[0] + "=a", ids[1] + "=b", ids[2] + "=c"}, got); diff != "" {
		t.Errorf("listing (-want +got):\n%s", diff)
	}
}

func TestRefusals(t *testing.T) {
	s := start(t, adcatch.Options{AccessToken: "tok", AdAccountID: "77", MaxEntries: 2})
	vip := create(t, s, "vip")
	bad := func(payload string) url.Values { return url.Values{"payload": {payload}} }
	for _, tc := range []struct {
		name, method, path, token string
		form                      url.Values
		status, code              int
	}{
		{"no token", "POST", "/v25.0/" + vip + "/users", "", users(h("a")), 400, 2500},
		{"wrong token", "POST", "/v25.0/" + vip + "/users", "nope", users(h("a")), 400, 190},
		{"no version", "POST", "/" + vip + "/users", "tok", users(h("a")), 400, 2500},
		{"unknown audience", "POST", "/v25.0/999/users", "tok", users(h("a")), 400, 100},
		{"another ad account", "GET", "/v25.0/act_78/customaudiences", "tok", nil, 400, 100},
		{"schema", "POST", "/v25.0/" + vip + "/users", "tok", bad(`{"schema":"EMAIL","data":["a@b.c"]}`), 400, 100},
		{"two fields", "POST", "/v25.0/" + vip + "/users", "tok", bad(`{"schema":["EMAIL_SHA256","PHONE_SHA256"],"data":[["x","y"]]}`), 400, 100},
		{"rows of a plain schema", "POST", "/v25.0/" + vip + "/users", "tok", bad(`{"schema":"EMAIL_SHA256","data":[["x"]]}`), 400, 100},
		{"no entries", "POST", "/v25.0/" + vip + "/users", "tok", users(), 400, 100},
		{"too many", "POST", "/v25.0/" + vip + "/users", "tok", users(h("a"), h("b"), h("c")), 400, 100},
		{"not JSON", "POST", "/v25.0/" + vip + "/users", "tok", bad("add everyone"), 400, 100},
		{"bad session", "POST", "/v25.0/" + vip + "/users", "tok", url.Values{"payload": users(h("a"))["payload"], "session": {`{"batch_seq":1}`}}, 400, 100},
		{"subtype", "POST", "/v25.0/act_77/customaudiences", "tok", url.Values{"name": {"x"}, "subtype": {"LOOKALIKE"}, "customer_file_source": {"USER_PROVIDED_ONLY"}}, 400, 100},
		{"file source", "POST", "/v25.0/act_77/customaudiences", "tok", url.Values{"name": {"x"}, "subtype": {"CUSTOM"}}, 400, 100},
	} {
		a, err := do(t, s, tc.method, tc.path, tc.token, tc.form)
		if err != nil || a.status != tc.status || a.code() != tc.code {
			t.Errorf("%s: %d %v %v, want %d code %d", tc.name, a.status, a.body, err, tc.status, tc.code)
		}
		if e := a.graphError(); tc.code != 0 && (e["type"] == nil || e["fbtrace_id"] == nil || e["message"] == "") {
			t.Errorf("%s: error body %v is not the Graph API's", tc.name, e)
		}
	}
	if st := s.Stats(); st.Requests != 0 || st.Creates != 1 || len(s.Members("vip")) != 0 {
		t.Errorf("refused requests changed something: %+v", st)
	}
}

func TestFaults(t *testing.T) {
	s := start(t, adcatch.Options{AdAccountID: "77"})
	aud := create(t, s, "aud")
	var fault adcatch.Fault
	var seen []adcatch.Request
	s.SetFault(func(r adcatch.Request) adcatch.Fault {
		seen = append(seen, r)
		return fault
	})
	tests := []struct {
		name    string
		fault   adcatch.Fault
		status  int
		code    int
		header  string // a header the answer must have
		dropped bool
		applied bool
	}{
		{"token", adcatch.Fault{Error: adcatch.ErrToken}, 400, 190, "", false, false},
		{"permission", adcatch.Fault{Error: adcatch.ErrPermission}, 403, 200, "", false, false},
		{"rate limit", adcatch.Fault{Error: adcatch.ErrRateLimit, RegainAfter: 2 * time.Minute}, 400, 17, "X-Business-Use-Case-Usage", false, false},
		{"service", adcatch.Fault{Error: adcatch.ErrService, RetryAfter: time.Second}, 500, 2, "Retry-After", false, false},
		{"audience", adcatch.Fault{Error: adcatch.ErrCustomAud}, 400, 2650, "", false, false},
		{"drop", adcatch.Fault{Drop: true}, 0, 0, "", true, false},
		{"drop after apply", adcatch.Fault{DropAfterApply: true}, 0, 0, "", true, true},
		{"delay", adcatch.Fault{Delay: 20 * time.Millisecond}, 200, 0, "", false, true},
	}
	for i, tc := range tests {
		fault = tc.fault
		m := h(strconv.Itoa(i)) // digits: hex
		a, err := do(t, s, "POST", "/v25.0/"+aud+"/users", "any", users(m))
		if tc.dropped != (err != nil) || (!tc.dropped && (a.status != tc.status || a.code() != tc.code || (tc.header != "" && a.header.Get(tc.header) == ""))) {
			t.Errorf("%s: %+v %v", tc.name, a, err)
		}
		if s.Has("aud", m) != tc.applied {
			t.Errorf("%s: applied = %v", tc.name, !tc.applied)
		}
	}
	if len(seen) != len(tests) || seen[0].Op != "users" || seen[0].Audience != aud || seen[0].Entries != 1 {
		t.Errorf("the fault hook saw %+v", seen)
	}
	if st := s.Stats(); st.Requests != int64(len(tests)) || st.Faulted != int64(len(tests)) {
		t.Errorf("stats %+v", st)
	}
}

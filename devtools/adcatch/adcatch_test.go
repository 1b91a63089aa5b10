package adcatch_test

import (
	"bytes"
	"encoding/json"
	"net/http"
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

func members(t *testing.T, s *adcatch.Server, key, audience string, req any) (int, string, adcatch.MembersResponse, error) {
	t.Helper()
	body, _ := json.Marshal(req)
	hr, _ := http.NewRequest(http.MethodPost, s.URL()+"/v1/audiences/"+audience+"/members", bytes.NewReader(body))
	if key != "" {
		hr.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(hr)
	if err != nil {
		return 0, "", adcatch.MembersResponse{}, err
	}
	defer resp.Body.Close()
	var out adcatch.MembersResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), out, nil
}

func TestMembershipIsASet(t *testing.T) {
	s := start(t, adcatch.Options{APIKey: "k"})
	steps := []struct {
		audience string
		req      adcatch.MembersRequest
		want     adcatch.MembersResponse
	}{
		{"vip", adcatch.MembersRequest{Operation: "add", EmailSHA256: []string{h("a"), h("b"), "NOT-HEX", h("a")}, CreativeID: "cr-1"},
			adcatch.MembersResponse{Received: 4, Changed: 2, Invalid: []int{2}}},
		{"vip", adcatch.MembersRequest{Operation: "add", EmailSHA256: []string{h("b"), h("c")}, CreativeID: "cr-2"},
			adcatch.MembersResponse{Received: 2, Changed: 1}},
		{"vip", adcatch.MembersRequest{Operation: "remove", EmailSHA256: []string{h("a"), h("d")}},
			adcatch.MembersResponse{Received: 2, Changed: 1}},
		{"other", adcatch.MembersRequest{Operation: "remove", EmailSHA256: []string{h("a")}},
			adcatch.MembersResponse{Received: 1}},
	}
	for i, st := range steps {
		status, _, got, err := members(t, s, "k", st.audience, st.req)
		if err != nil || status != 200 {
			t.Fatalf("step %d: %d %v", i, status, err)
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("step %d (-want +got):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff([]string{h("b"), h("c")}, s.Members("vip")); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
	if !s.Has("vip", h("c")) || s.Has("vip", h("a")) || s.Has("other", h("a")) {
		t.Error("Has is wrong")
	}
	resp, err := http.Get(s.URL() + "/v1/audiences/vip")
	if err != nil {
		t.Fatal(err)
	}
	var a adcatch.Audience
	_ = json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if want := (adcatch.Audience{ID: "vip", Size: 2, Creatives: []string{"cr-1", "cr-2"}}); !cmp.Equal(a, want) {
		t.Errorf("audience %+v, want %+v", a, want)
	}
	if st := s.Stats(); st != (adcatch.Stats{Requests: 4, Added: 3, Removed: 1, Unchanged: 4}) {
		t.Errorf("stats %+v", st)
	}
}

func TestRefusals(t *testing.T) {
	s := start(t, adcatch.Options{APIKey: "k", MaxMembers: 2})
	ok := adcatch.MembersRequest{Operation: "add", EmailSHA256: []string{h("a")}}
	for _, tc := range []struct {
		name, key, audience string
		req                 any
		want                int
	}{
		{"no key", "", "vip", ok, 401},
		{"bad id", "k", "v%20ip", ok, 400},
		{"bad operation", "k", "vip", adcatch.MembersRequest{Operation: "replace", EmailSHA256: []string{h("a")}}, 400},
		{"no members", "k", "vip", adcatch.MembersRequest{Operation: "add"}, 400},
		{"too many", "k", "vip", adcatch.MembersRequest{Operation: "add", EmailSHA256: []string{h("a"), h("b"), h("c")}}, 400},
		{"bad creative", "k", "vip", adcatch.MembersRequest{Operation: "add", EmailSHA256: []string{h("a")}, CreativeID: "a/b"}, 400},
		{"not JSON", "k", "vip", "add everyone", 400},
	} {
		if status, _, _, err := members(t, s, tc.key, tc.audience, tc.req); err != nil || status != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, status, err, tc.want)
		}
	}
	if st := s.Stats(); st.Requests != 0 || len(s.Members("vip")) != 0 {
		t.Errorf("refused requests changed something: %+v", st)
	}
}

func TestFaults(t *testing.T) {
	s := start(t, adcatch.Options{})
	var fault adcatch.Fault
	var seen []adcatch.Request
	s.SetFault(func(r adcatch.Request) adcatch.Fault {
		seen = append(seen, r)
		return fault
	})
	tests := []struct {
		name       string
		fault      adcatch.Fault
		status     int
		retryAfter string
		dropped    bool
		applied    bool
	}{
		{"503", adcatch.Fault{Status: 503}, 503, "", false, false},
		{"429", adcatch.Fault{Status: 429, RetryAfter: 2 * time.Second}, 429, "2", false, false},
		{"drop", adcatch.Fault{Drop: true}, 0, "", true, false},
		{"drop after apply", adcatch.Fault{DropAfterApply: true}, 0, "", true, true},
		{"delay", adcatch.Fault{Delay: 20 * time.Millisecond}, 200, "", false, true},
	}
	for i, tc := range tests {
		fault = tc.fault
		m := h(string(rune('a' + i)))
		status, ra, _, err := members(t, s, "", "aud", adcatch.MembersRequest{Operation: "add", EmailSHA256: []string{m}})
		if tc.dropped != (err != nil) || (!tc.dropped && (status != tc.status || ra != tc.retryAfter)) {
			t.Errorf("%s: %d %q %v", tc.name, status, ra, err)
		}
		if s.Has("aud", m) != tc.applied {
			t.Errorf("%s: applied = %v", tc.name, !tc.applied)
		}
	}
	if len(seen) != 5 || seen[0] != (adcatch.Request{Audience: "aud", Operation: "add", Members: 1}) {
		t.Errorf("the fault hook saw %+v", seen)
	}
	if st := s.Stats(); st.Requests != 5 || st.Faulted != 5 {
		t.Errorf("stats %+v", st)
	}
}

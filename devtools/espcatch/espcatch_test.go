package espcatch_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/devtools/espcatch"
)

func start(t *testing.T, opts espcatch.Options) *espcatch.Server {
	t.Helper()
	s, err := espcatch.Start(t.Context(), opts)
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

// post sends a request and returns the status, the Retry-After header and
// the decoded results; err is a transport error.
func post(t *testing.T, s *espcatch.Server, key string, req any) (int, string, []espcatch.Result, error) {
	t.Helper()
	var body []byte
	switch r := req.(type) {
	case []byte:
		body = r
	default:
		var err error
		if body, err = json.Marshal(req); err != nil {
			t.Fatal(err)
		}
	}
	hr, err := http.NewRequest(http.MethodPost, s.URL()+"/v1/send", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		hr.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(hr)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out espcatch.SendResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), out.Results, nil
}

func msg(key, to string) espcatch.SendMessage {
	return espcatch.SendMessage{IdempotencyKey: key, From: "bounce@shop.example", To: to, MessageID: key + "@herald.test",
		Raw: []byte("Message-ID: <" + key + "@herald.test>\r\n\r\nhello " + to + "\r\n")}
}

func TestAcceptsOnceByIdempotencyKey(t *testing.T) {
	s := start(t, espcatch.Options{APIKey: "secret", KeepRaw: true})
	req := espcatch.SendRequest{Messages: []espcatch.SendMessage{msg("k1", "a@example.com"), msg("k2", "b@example.com"), msg("k3", "c@example.com")}}
	status, _, first, err := post(t, s, "secret", req)
	if err != nil || status != http.StatusOK {
		t.Fatalf("status %d, %v", status, err)
	}
	want := []espcatch.Result{
		{IdempotencyKey: "k1", Status: 202, ID: "esp-1"},
		{IdempotencyKey: "k2", Status: 202, ID: "esp-2"},
		{IdempotencyKey: "k3", Status: 202, ID: "esp-3"},
	}
	if diff := cmp.Diff(want, first); diff != "" {
		t.Errorf("first results (-want +got):\n%s", diff)
	}
	// The same batch again, with one new message: the old ones are
	// answered from the record and not accepted twice.
	req.Messages = append(req.Messages, msg("k4", "d@example.com"))
	_, _, second, _ := post(t, s, "secret", req)
	for i := range want {
		want[i].Duplicate = true
	}
	want = append(want, espcatch.Result{IdempotencyKey: "k4", Status: 202, ID: "esp-4"})
	if diff := cmp.Diff(want, second); diff != "" {
		t.Errorf("second results (-want +got):\n%s", diff)
	}
	if st := s.Stats(); st != (espcatch.Stats{Requests: 2, Messages: 4, Duplicates: 3}) {
		t.Errorf("stats %+v", st)
	}
	got := s.Messages()
	if len(got) != 4 || got[1].IdempotencyKey != "k2" || got[1].To != "b@example.com" || got[1].MessageID != "k2@herald.test" ||
		string(got[1].Raw) != string(msg("k2", "b@example.com").Raw) || got[1].Size != len(got[1].Raw) {
		t.Errorf("messages %+v", got)
	}
	if !s.Has("k4") || s.Has("k5") {
		t.Error("Has is wrong")
	}

	resp, err := http.Post(s.URL()+"/api/lookup", "application/json", strings.NewReader(`{"message_ids":["k1@herald.test","<k3@herald.test>","k9@herald.test"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var found struct{ Found []string }
	_ = json.NewDecoder(resp.Body).Decode(&found)
	resp.Body.Close()
	if want := []string{"k1@herald.test", "<k3@herald.test>"}; !cmp.Equal(found.Found, want) {
		t.Errorf("lookup found %q, want %q", found.Found, want)
	}
	resp, err = http.Get(s.URL() + "/api/messages?to=C@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Messages []espcatch.Message }
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Messages) != 1 || list.Messages[0].IdempotencyKey != "k3" {
		t.Errorf("messages to c@: %+v", list.Messages)
	}
}

func TestRefusals(t *testing.T) {
	s := start(t, espcatch.Options{APIKey: "secret", MaxBatch: 3, MaxRequestBytes: 4 << 10})
	s.SetReject(func(m espcatch.SendMessage) *espcatch.Rejection {
		switch {
		case strings.HasPrefix(m.To, "gone@"):
			return &espcatch.Rejection{Status: 422, Error: "mailbox does not exist", HardBounce: true}
		case strings.HasPrefix(m.To, "later@"):
			return &espcatch.Rejection{Status: 503, Error: "try again"}
		}
		return nil
	})
	if _, _, _, err := post(t, s, "secret", espcatch.SendRequest{Messages: []espcatch.SendMessage{msg("seen", "x@example.com")}}); err != nil {
		t.Fatal(err)
	}
	noKey := msg("", "a@example.com")
	req := espcatch.SendRequest{Messages: []espcatch.SendMessage{noKey, msg("k2", "not an address"), msg("seen", "y@example.com")}}
	_, _, res, _ := post(t, s, "secret", req)
	if len(res) != 3 || res[0].Status != 400 || res[1].Status != 400 || res[2].Status != 409 {
		t.Errorf("invalid messages: %+v", res)
	}
	req = espcatch.SendRequest{Messages: []espcatch.SendMessage{msg("g", "gone@example.com"), msg("l", "later@example.com")}}
	_, _, res, _ = post(t, s, "secret", req)
	want := []espcatch.Result{
		{IdempotencyKey: "g", Status: 422, Error: "mailbox does not exist", HardBounce: true},
		{IdempotencyKey: "l", Status: 503, Error: "try again"},
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("rejected (-want +got):\n%s", diff)
	}
	s.SetReject(nil)
	_, _, res, _ = post(t, s, "secret", req)
	want = []espcatch.Result{
		{IdempotencyKey: "g", Status: 422, Error: "mailbox does not exist", HardBounce: true, Duplicate: true}, // final
		{IdempotencyKey: "l", Status: 202, ID: "esp-2"},                                                        // temporary: accepted now
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("retried (-want +got):\n%s", diff)
	}

	tooMany := espcatch.SendRequest{Messages: []espcatch.SendMessage{msg("1", "a@x.example"), msg("2", "a@x.example"), msg("3", "a@x.example"), msg("4", "a@x.example")}}
	big := msg("big", "a@example.com")
	big.Raw = bytes.Repeat([]byte("x"), 8<<10)
	for _, tc := range []struct {
		name string
		key  string
		req  any
		want int
	}{
		{"no key", "", req, 401},
		{"wrong key", "guess", req, 401},
		{"malformed", "secret", []byte(`{"messages": [`), 400},
		{"empty", "secret", espcatch.SendRequest{}, 400},
		{"too many", "secret", tooMany, 400},
		{"too large", "secret", espcatch.SendRequest{Messages: []espcatch.SendMessage{big}}, 413},
	} {
		if status, _, _, err := post(t, s, tc.key, tc.req); err != nil || status != tc.want {
			t.Errorf("%s: status %d, %v; want %d", tc.name, status, err, tc.want)
		}
	}
	if st := s.Stats(); st.Messages != 2 || st.Rejected != 5 || st.Duplicates != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestFaults(t *testing.T) {
	s := start(t, espcatch.Options{})
	var fault espcatch.Fault
	var seen [][]string
	s.SetFault(func(r espcatch.Request) espcatch.Fault {
		seen = append(seen, r.Keys)
		return fault
	})
	n := 0
	send := func() (int, string, []espcatch.Result, error) {
		n++
		k := string(rune('a' + n))
		return post(t, s, "", espcatch.SendRequest{Messages: []espcatch.SendMessage{msg(k, k+"@example.com")}})
	}
	tests := []struct {
		name       string
		fault      espcatch.Fault
		status     int
		retryAfter string
		transport  bool // the client gets no response
		accepted   bool
	}{
		{"none", espcatch.Fault{}, 200, "", false, true},
		{"5xx", espcatch.Fault{Status: 503}, 503, "", false, false},
		{"429", espcatch.Fault{Status: 429, RetryAfter: 1500 * time.Millisecond}, 429, "2", false, false},
		{"delay", espcatch.Fault{Delay: 50 * time.Millisecond}, 200, "", false, true},
		{"drop", espcatch.Fault{Drop: true}, 0, "", true, false},
		{"drop after accept", espcatch.Fault{DropAfterAccept: true}, 0, "", true, true},
	}
	for _, tc := range tests {
		fault = tc.fault
		before := s.Stats().Messages
		status, ra, _, err := send()
		if tc.transport != (err != nil) || (!tc.transport && (status != tc.status || ra != tc.retryAfter)) {
			t.Errorf("%s: status %d, Retry-After %q, error %v", tc.name, status, ra, err)
		}
		if got := s.Stats().Messages - before; got != map[bool]int64{true: 1}[tc.accepted] {
			t.Errorf("%s: %d messages accepted", tc.name, got)
		}
	}
	if st := s.Stats(); st.Requests != 6 || st.Faulted != 5 {
		t.Errorf("stats %+v", st)
	}
	if len(seen) != 6 || !cmp.Equal(seen[0], []string{"b"}) {
		t.Errorf("the fault hook saw %q", seen)
	}
}

func TestCloseCutsDelaysShort(t *testing.T) {
	s, err := espcatch.Start(t.Context(), espcatch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.SetFault(func(espcatch.Request) espcatch.Fault { return espcatch.Fault{Delay: time.Hour} })
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := post(t, s, "", espcatch.SendRequest{Messages: []espcatch.SendMessage{msg("k", "a@example.com")}})
		errc <- err
	}()
	for s.Stats().Requests == 0 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for a delayed request")
	}
	<-errc
	if st := s.Stats(); st.Messages != 0 {
		t.Errorf("a request cut short by Close was accepted: %+v", st)
	}
}

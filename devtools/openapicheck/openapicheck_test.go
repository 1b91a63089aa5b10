package openapicheck_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/devtools/openapicheck"
)

func newChecker(t *testing.T) *openapicheck.Checker {
	t.Helper()
	doc, err := os.ReadFile("testdata/things.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := openapicheck.New(doc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exchange is one request and its answer, as a test would see them.
type exchange struct {
	method, path, reqType, reqBody string
	status                         int
	respType, respBody             string
	respHeader                     map[string]string
}

func (e exchange) check(t *testing.T, c *openapicheck.Checker) error {
	t.Helper()
	req := httptest.NewRequest(e.method, "http://127.0.0.1:8080"+e.path, strings.NewReader(e.reqBody))
	if e.reqType != "" {
		req.Header.Set("Content-Type", e.reqType)
	}
	resp := &http.Response{StatusCode: e.status, Header: http.Header{}}
	if e.respType != "" {
		resp.Header.Set("Content-Type", e.respType)
	}
	for k, v := range e.respHeader {
		resp.Header.Set(k, v)
	}
	return c.Check(req, []byte(e.reqBody), resp, []byte(e.respBody))
}

const js = "application/json"

// TestCheck: exchanges the document allows pass, and every kind of
// mismatch is caught and named.
func TestCheck(t *testing.T) {
	c := newChecker(t)
	located := map[string]string{"Location": "/things/1"}
	tests := []struct {
		name    string
		ex      exchange
		wantErr string // "" for none
	}{
		{"a documented answer", exchange{method: "GET", path: "/things/1", status: 200, respType: js, respBody: `{"name":"a","count":1}`}, ""},
		{"a documented error", exchange{method: "GET", path: "/things/1", status: 404, respType: js, respBody: `{"error":"no"}`}, ""},
		{"a member the schema lacks", exchange{method: "GET", path: "/things/1", status: 200, respType: js, respBody: `{"name":"a","count":1,"colour":"red"}`}, `"colour" is unsupported`},
		{"a required member missing", exchange{method: "GET", path: "/things/1", status: 200, respType: js, respBody: `{"name":"a"}`}, `"count"`},
		{"a value out of range", exchange{method: "GET", path: "/things/1", status: 200, respType: js, respBody: `{"name":"a","count":-1}`}, "at /count"},
		{"an undocumented status", exchange{method: "GET", path: "/things/1", status: 500, respType: js, respBody: `{"error":"boom"}`}, "status is not supported"},
		{"an undocumented media type", exchange{method: "GET", path: "/things/1", status: 200, respType: "text/plain", respBody: `x`}, "text/plain"},
		{"a body where none is documented", exchange{method: "POST", path: "/things", reqType: js, reqBody: `{"name":"a","count":1}`,
			status: 201, respType: js, respBody: `{}`, respHeader: located}, "says there is none"},
		{"a required header missing", exchange{method: "POST", path: "/things", reqType: js, reqBody: `{"name":"a","count":1}`, status: 201}, "Location"},
		{"a valid request accepted", exchange{method: "POST", path: "/things", reqType: js, reqBody: `{"name":"a","count":1}`, status: 201, respHeader: located}, ""},
		{"a forbidden request refused", exchange{method: "POST", path: "/things", reqType: js, reqBody: `{"name":"a"}`,
			status: 400, respType: js, respBody: `{"error":"count"}`}, ""},
		{"a forbidden request accepted", exchange{method: "POST", path: "/things", reqType: js, reqBody: `{"name":"a"}`, status: 201, respHeader: located}, "forbids"},
		{"a forbidden path parameter accepted", exchange{method: "GET", path: "/things/0", status: 200, respType: js, respBody: `{"name":"a","count":1}`}, "forbids"},
		{"an undocumented operation refused", exchange{method: "DELETE", path: "/things/1", status: 404, respType: js, respBody: `{"error":"no"}`}, ""},
		{"an undocumented operation served", exchange{method: "DELETE", path: "/things/1", status: 204}, "no such operation"},
		{"an undocumented path served", exchange{method: "GET", path: "/nowhere", status: 200, respType: js, respBody: `{}`}, "no such operation"},
		{"NDJSON lines that match", exchange{method: "POST", path: "/lines", reqType: "application/x-ndjson",
			reqBody: `{"name":"a","count":1}` + "\n\n" + `{"name":"b","count":2}` + "\n", status: 204}, ""},
		{"an NDJSON line that does not match, accepted", exchange{method: "POST", path: "/lines", reqType: "application/x-ndjson",
			reqBody: `{"name":"a","count":1}` + "\n" + `{"name":"b"}` + "\n", status: 204}, "line 2"},
		{"an NDJSON line that is not JSON, accepted", exchange{method: "POST", path: "/lines", reqType: "application/x-ndjson",
			reqBody: `{"name":"a",` + "\n", status: 204}, "line 1"},
		{"an undocumented request media type, accepted", exchange{method: "POST", path: "/lines", reqType: "application/jsonl",
			reqBody: `{"name":"a","count":1}` + "\n", status: 204}, "application/jsonl"},
		{"an HTML page", exchange{method: "GET", path: "/page", status: 200, respType: "text/html; charset=utf-8", respBody: "<p>hi</p>"}, ""},
		{"an HTML page against its schema", exchange{method: "GET", path: "/page", status: 200, respType: "text/html; charset=utf-8"}, "minimum string length"},
		{"JSON for an HTML page", exchange{method: "GET", path: "/page", status: 200, respType: js, respBody: `{}`}, js},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ex.check(t, c)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("mismatch where none was expected: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("no mismatch, want one naming %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("mismatch %v; want one naming %q", err, tc.wantErr)
			}
		})
	}
}

func TestOperations(t *testing.T) {
	want := []string{"GET /page", "GET /things/{id}", "POST /lines", "POST /things"}
	if diff := cmp.Diff(want, newChecker(t).Operations()); diff != "" {
		t.Fatalf("operations (-want +got):\n%s", diff)
	}
}

// recorder is a test that keeps what it is told to report.
type recorder struct {
	testing.TB
	cleanups []func()
	errors   []string
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) end() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// TestTransport: through the transport, an answer the document allows
// reaches the caller intact; one it does not is the request's error and
// is reported again when the test ends. The request body the server read
// is what is checked, even when it streams.
func TestTransport(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", js)
		if r.PathValue("id") == "2" {
			fmt.Fprint(w, `{"name":"b","count":"two"}`)
			return
		}
		fmt.Fprint(w, `{"name":"a","count":1}`)
	})
	mux.HandleFunc("POST /lines", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	rec := &recorder{TB: t}
	client := &http.Client{Transport: newChecker(t).Transport(rec, nil)}

	resp, err := client.Get(srv.URL + "/things/1")
	if err != nil {
		t.Fatalf("a documented answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != `{"name":"a","count":1}` {
		t.Fatalf("the caller got %q", body)
	}

	pr, pw := io.Pipe()
	go func() {
		fmt.Fprint(pw, `{"name":"a","count":1}`+"\n")
		fmt.Fprint(pw, `{"name":"b"}`+"\n")
		pw.Close()
	}()
	if _, err := client.Post(srv.URL+"/lines", "application/x-ndjson", pr); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("a streamed upload with a bad second line, accepted: %v", err)
	}
	if _, err := client.Get(srv.URL + "/things/2"); err == nil || !strings.Contains(err.Error(), "at /count") {
		t.Fatalf("an answer with a string count: %v", err)
	}
	if len(rec.errors) != 0 {
		t.Fatalf("reported before the test ended: %q", rec.errors)
	}
	rec.end()
	if len(rec.errors) != 2 || !strings.Contains(rec.errors[0], "line 2") || !strings.Contains(rec.errors[1], "at /count") {
		t.Fatalf("reported at the end: %q", rec.errors)
	}
}

package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"herald/ingest/internal/api"
	"herald/shared/bodyrate"
)

// send makes a request with body as tenant and decodes the JSON answer; a
// failure to get an answer before ctx ends is reported as status 0.
func (f *fixture) send(ctx context.Context, method, path, tenant, contentType string, body io.Reader) response {
	return f.sendWith(ctx, method, path, tenant, contentType, body, nil)
}

// sendWith is send with more request headers.
func (f *fixture) sendWith(ctx context.Context, method, path, tenant, contentType string, body io.Reader, header http.Header) response {
	req, err := http.NewRequestWithContext(ctx, method, f.srv.URL+path, body)
	if err != nil {
		return response{}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set(api.TenantHeader, tenant)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return response{}
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return response{status: resp.StatusCode, body: m, header: resp.Header}
}

// sendPiped sends a request whose body is what the test writes to the pipe
// it returns, and delivers the answer on done.
func (f *fixture) sendPiped(ctx context.Context, method, path, tenant, contentType string, done chan<- response) *io.PipeWriter {
	pr, pw := io.Pipe()
	go func() {
		// The client waits for its body to end even after ctx does.
		<-ctx.Done()
		pw.CloseWithError(ctx.Err())
	}()
	go func() { done <- f.send(ctx, method, path, tenant, contentType, pr) }()
	return pw
}

// slowUpload is an upload whose body arrives when the test writes it.
type slowUpload struct {
	w    *io.PipeWriter
	done chan response
}

// The request expects 100-continue: the client sends no byte of the body
// before ingest's handler asks for it, which it does only once the tenant
// is looked up and the upload has its slot. So once a write returns, the
// upload is in progress, however long the lookup took.
func (f *fixture) startUpload(ctx context.Context, tenant string) slowUpload {
	u := slowUpload{done: make(chan response, 1)}
	pr, pw := io.Pipe()
	go func() {
		// The client waits for its body to end even after ctx does.
		<-ctx.Done()
		pw.CloseWithError(ctx.Err())
	}()
	go func() {
		u.done <- f.sendWith(ctx, "POST", "/v1/customers", tenant, ndjson, pr, http.Header{"Expect": {"100-continue"}})
	}()
	u.w = pw
	return u
}

// write sends part of the body and returns once ingest has read it.
func (u slowUpload) write(ctx context.Context, s string) error {
	written := make(chan error, 1)
	go func() {
		_, err := io.WriteString(u.w, s)
		written <- err
	}()
	select {
	case err := <-written:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestSlowUploadsHoldNoConnection: uploads whose bodies trickle in, as many
// as the pool has connections, leave other tenants' reads answering, hold
// no connection while they wait for their bodies, and a tenant's upload
// beyond its limit is refused with 429. When the bodies end, every upload
// is stored.
func TestSlowUploadsHoldNoConnection(t *testing.T) {
	limits := api.DefaultLimits
	limits.TenantUploads = 4
	f := newFixture(t, limits)
	// The client waits for ingest's 100 Continue as long as the test runs
	// (see startUpload).
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.ExpectContinueTimeout = 10 * time.Minute
	f.client = checkedClientOver(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool := int(f.db.Config().MaxConns)
	var uploads []slowUpload
	var tenants []string
	for i := 0; len(uploads) < pool; i++ {
		tenant := fmt.Sprintf("slow%d", i)
		tenants = append(tenants, tenant)
		for range limits.TenantUploads {
			uploads = append(uploads, f.startUpload(ctx, tenant))
		}
	}
	for i, u := range uploads {
		if err := u.write(ctx, `{"id":"c1","email":"a@example.com"}`+"\n"); err != nil {
			t.Fatalf("upload %d never read its first line: %v", i, err)
		}
	}
	defer func() {
		for _, u := range uploads {
			u.w.CloseWithError(io.ErrUnexpectedEOF)
		}
	}()

	readCtx, cancelRead := context.WithTimeout(ctx, 30*time.Second)
	defer cancelRead()
	if r := f.send(readCtx, "GET", "/v1/profile", "globex", "", nil); r.status != 404 {
		t.Errorf("another tenant's GET /v1/profile with %d uploads open: %d (0: no answer)", len(uploads), r.status)
	}
	if r := f.send(readCtx, "GET", "/v1/jobs", "globex", "", nil); r.status != 200 {
		t.Errorf("another tenant's GET /v1/jobs with %d uploads open: %d (0: no answer)", len(uploads), r.status)
	}
	if n := f.db.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d database connections held while %d uploads wait for their bodies", n, len(uploads))
	}
	extra := f.send(readCtx, "POST", "/v1/customers", tenants[0], ndjson, strings.NewReader(`{"id":"c9","email":"z@example.com"}`+"\n"))
	if code, msg := errorOf(extra); extra.status != 429 || code != "too_many_uploads" || extra.header.Get("Retry-After") == "" {
		t.Errorf("upload %d of a tenant with a limit of %d: %d %q %q, Retry-After %q", limits.TenantUploads+1, limits.TenantUploads,
			extra.status, code, msg, extra.header.Get("Retry-After"))
	}
	if t.Failed() {
		return
	}

	for i, u := range uploads {
		if err := u.write(ctx, `{"id":"c2","email":"b@example.com"}`+"\n"); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		u.w.Close()
	}
	for i, u := range uploads {
		if r := <-u.done; r.status != 200 || r.body["upserted"] != float64(2) {
			t.Fatalf("upload %d: %d %v", i, r.status, r.body)
		}
	}
	if n := f.count("customers"); n != 2*len(tenants) {
		t.Fatalf("%d customers stored, want %d", n, 2*len(tenants))
	}
	// The slots are free again.
	if r := f.send(ctx, "POST", "/v1/customers", tenants[0], ndjson, strings.NewReader(`{"id":"c9","email":"z@example.com"}`+"\n")); r.status != 200 {
		t.Fatalf("upload after the others ended: %d %v", r.status, r.body)
	}
}

// TestSlowBodiesAreCutOff: a body that falls behind the minimum rate is
// answered 408, stores nothing and frees the tenant's upload slot.
func TestSlowBodiesAreCutOff(t *testing.T) {
	limits := api.DefaultLimits
	limits.TenantUploads = 1
	limits.Body = bodyrate.Rule{BytesPerSecond: 1 << 20, Grace: 100 * time.Millisecond}
	f := newFixture(t, limits)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := f.snapshot()
	for _, tc := range []struct{ method, path, contentType, start string }{
		{"POST", "/v1/customers", ndjson, `{"id":"c1","email":"a@example.com"}` + "\n" + `{"id":"c2",`},
		{"PUT", "/v1/profile", "application/json", `{"name":"Acme",`},
		{"POST", "/v1/templates/t/versions", "application/json", `{"from_email":"d@acme.example",`},
	} {
		done := make(chan response, 1)
		pw := f.sendPiped(ctx, tc.method, tc.path, "acme", tc.contentType, done)
		if _, err := io.WriteString(pw, tc.start); err != nil {
			t.Fatal(err)
		}
		// Nothing more is sent.
		var r response
		select {
		case r = <-done:
		case <-ctx.Done():
			t.Fatalf("%s %s: a stalled body was never cut off", tc.method, tc.path)
		}
		pw.Close()
		if code, _ := errorOf(r); r.status != 408 || code != "body_too_slow" {
			t.Fatalf("%s %s with a stalled body: %d %v", tc.method, tc.path, r.status, r.body)
		}
	}
	f.unchanged(before)
	if r := f.send(ctx, "POST", "/v1/customers", "acme", ndjson, strings.NewReader(`{"id":"c1","email":"a@example.com"}`+"\n")); r.status != 200 {
		t.Fatalf("upload after one was cut off: %d %v", r.status, r.body)
	}
}

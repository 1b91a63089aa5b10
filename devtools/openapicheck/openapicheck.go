// Package openapicheck holds an HTTP API to its OpenAPI 3 document in
// tests: every request a test sends and every answer it gets is validated
// against the document, so the document describes what the API does
// rather than what someone once wrote down.
//
// A request the document forbids may still be sent: tests send bad
// requests on purpose to see them refused. What is a mismatch is an API
// that accepts one (answers 2xx), that answers anything but a refusal
// (4xx) to an operation the document lacks, or that answers with a status
// the document does not list for the operation, or with headers or a body
// other than it says.
package openapicheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	legacyrouter "github.com/getkin/kin-openapi/routers/legacy"
)

// ndjsonTypes are the media types of bodies of one JSON value a line. The
// document gives the schema of one line; kin-openapi has no decoder for
// them, so the checker validates each line itself.
var ndjsonTypes = []string{"application/x-ndjson", "application/jsonl"}

// Checker validates exchanges against one document.
type Checker struct {
	doc    *openapi3.T
	router routers.Router
}

// New loads and validates an OpenAPI 3 document.
func New(document []byte) (*Checker, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(document)
	if err != nil {
		return nil, fmt.Errorf("load OpenAPI document: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("validate OpenAPI document: %w", err)
	}
	// Tests reach the API at a local address, not at the documented
	// servers: routes match on the path alone.
	doc.Servers = nil
	router, err := legacyrouter.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route OpenAPI document: %w", err)
	}
	return &Checker{doc: doc, router: router}, nil
}

// Operations lists the document's operations as "METHOD /path".
func (c *Checker) Operations() []string {
	var ops []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(ops)
	return ops
}

// Check validates one exchange: req, the body it sent (what the server
// could read of it), and the answer with its body. It returns nil when
// the exchange is one the document allows.
func (c *Checker) Check(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	where := req.Method + " " + req.URL.Path
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		// A request for no documented operation is one the document
		// forbids: refusing it is all the API can do right.
		if resp.StatusCode/100 == 4 {
			return nil
		}
		return fmt.Errorf("%s answered %d, but the document has no such operation: %w", where, resp.StatusCode, err)
	}
	ctx := context.Background()
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	r.GetBody = nil
	mediaType, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	lines := slices.Contains(ndjsonTypes, mediaType) && route.Operation.RequestBody != nil
	reqOpts := &openapi3filter.Options{
		// The edge checks the partner's token; the document only names it.
		AuthenticationFunc:  openapi3filter.NoopAuthenticationFunc,
		ExcludeRequestBody:  lines,
		MultiError:          true,
		SkipSettingDefaults: true,
	}
	reqOpts.WithCustomSchemaErrorFunc(schemaError)
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: reqOpts}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	if lines {
		reqErr = errors.Join(reqErr, c.checkLines(route, mediaType, reqBody))
	}
	if reqErr != nil && resp.StatusCode/100 == 2 {
		return fmt.Errorf("%s answered %d to a request the document forbids:\n%v", where, resp.StatusCode, reqErr)
	}
	// A request the document forbids is still one of this operation, so
	// its answer must be one the operation lists.
	respType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	text := strings.HasPrefix(respType, "text/") && openapi3filter.RegisteredBodyDecoder(respType) == nil
	respOpts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: text}
	respOpts.WithCustomSchemaErrorFunc(schemaError)
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: respOpts}
	out.SetBodyBytes(respBody)
	respErr := openapi3filter.ValidateResponse(ctx, out)
	if doc := route.Operation.Responses.Status(resp.StatusCode); respErr == nil && doc != nil {
		respErr = checkBody(doc.Value, respType, text, respBody)
	}
	if respErr != nil {
		return fmt.Errorf("%s answered %d, which the document does not allow:\n%v\nbody: %s", where, resp.StatusCode, respErr, clip(respBody))
	}
	return nil
}

// checkBody makes the checks of an answer's body that kin-openapi leaves
// out: a body where the document says there is none, and a text body (an
// HTML page), which it has no decoder for.
func checkBody(doc *openapi3.Response, mediaType string, text bool, body []byte) error {
	if len(doc.Content) == 0 {
		if len(body) > 0 {
			return errors.New("a body, where the document says there is none")
		}
		return nil
	}
	if !text {
		return nil
	}
	content := doc.Content.Get(mediaType)
	if content == nil {
		return fmt.Errorf("media type %q is not documented", mediaType)
	}
	if content.Schema == nil {
		return nil
	}
	return content.Schema.Value.VisitJSON(string(body), openapi3.MultiErrors(), openapi3.SetSchemaErrorMessageCustomizer(schemaError))
}

// checkLines validates each line of an NDJSON body against the schema the
// document gives for mediaType.
func (c *Checker) checkLines(route *routers.Route, mediaType string, body []byte) error {
	content := route.Operation.RequestBody.Value.Content.Get(mediaType)
	if content == nil {
		return fmt.Errorf("request body: media type %q is not documented", mediaType)
	}
	if content.Schema == nil {
		return nil
	}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, len(body)+1)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var v any
		if err := json.Unmarshal(line, &v); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		if err := content.Schema.Value.VisitJSON(v, openapi3.MultiErrors(), openapi3.SetSchemaErrorMessageCustomizer(schemaError)); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// schemaError names where in the value a schema failed and why, without
// kin-openapi's dump of the whole schema and value.
func schemaError(err *openapi3.SchemaError) string {
	msg := fmt.Sprintf("at /%s: %s", strings.Join(err.JSONPointer(), "/"), err.Reason)
	if err.Origin != nil {
		msg += ": " + err.Origin.Error()
	}
	return msg
}

func clip(b []byte) string {
	const max = 2000
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// Transport returns a RoundTripper that sends each request through base
// (http.DefaultTransport if nil) and checks the exchange. A mismatch is
// the request's error, so the call that made it fails where it stands,
// and is reported again when t ends, so that no retry loop or ignored
// error can hide it.
func (c *Checker) Transport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	tr := &transport{checker: c, base: base}
	t.Cleanup(func() {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, err := range tr.mismatches {
			t.Errorf("openapicheck: %v", err)
		}
	})
	return tr
}

type transport struct {
	checker *Checker
	base    http.RoundTripper

	mu         sync.Mutex
	mismatches []error
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := &capture{}
	out := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		out.Body = &teeBody{r: req.Body, c: sent}
		if req.GetBody != nil {
			out.GetBody = func() (io.ReadCloser, error) {
				b, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				sent.reset()
				return &teeBody{r: b, c: sent}, nil
			}
		}
	}
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read answer of %s %s: %w", req.Method, req.URL.Path, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := t.checker.Check(req, sent.bytes(), resp, body); err != nil {
		t.mu.Lock()
		t.mismatches = append(t.mismatches, err)
		t.mu.Unlock()
		return nil, fmt.Errorf("openapicheck: %w", err)
	}
	return resp, nil
}

// capture keeps what a request body yielded to the transport, which may
// still be reading it when the answer arrives.
type capture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *capture) write(p []byte) {
	c.mu.Lock()
	c.buf.Write(p)
	c.mu.Unlock()
}

func (c *capture) reset() {
	c.mu.Lock()
	c.buf.Reset()
	c.mu.Unlock()
}

func (c *capture) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

type teeBody struct {
	r io.ReadCloser
	c *capture
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.c.write(p[:n])
	return n, err
}

func (b *teeBody) Close() error { return b.r.Close() }

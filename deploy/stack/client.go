package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Client speaks the partner API as one tenant, through the edge: it sends
// Token, or when that is empty a token it mints for Tenant with the
// development key (see MintToken).
type Client struct {
	BaseURL string
	Tenant  string
	Token   string
	HTTP    *http.Client

	mu      sync.Mutex
	minted  string
	expires time.Time
}

// token returns the bearer token to send, minting a fresh one as the last
// nears its expiry.
func (c *Client) token() (string, error) {
	if c.Token != "" || c.Tenant == "" {
		return c.Token, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.minted == "" || time.Until(c.expires) < 5*time.Minute {
		t, err := MintToken(c.Tenant, time.Hour)
		if err != nil {
			return "", err
		}
		c.minted, c.expires = t, time.Now().Add(time.Hour)
	}
	return c.minted, nil
}

// APIError is a non-2xx answer.
type APIError struct {
	Status int
	Body   string
}

func (e *APIError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// Do sends a request and decodes a 2xx JSON answer into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path, contentType string, body io.Reader, header http.Header, out any) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	tok, err := c.token()
	if err != nil {
		return nil, fmt.Errorf("mint token: %w", err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, err
	}
	if resp.StatusCode/100 != 2 {
		return resp, &APIError{Status: resp.StatusCode, Body: string(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp, fmt.Errorf("decode %s %s answer: %w", method, path, err)
		}
	}
	return resp, nil
}

// JSON sends v as JSON.
func (c *Client) JSON(ctx context.Context, method, path string, v any, header http.Header, out any) (*http.Response, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return c.Do(ctx, method, path, "application/json", bytes.NewReader(b), header, out)
}

// Upload streams NDJSON from r to a bulk endpoint.
func (c *Client) Upload(ctx context.Context, path string, r io.Reader) error {
	_, err := c.Do(ctx, http.MethodPost, path, "application/x-ndjson", r, nil, nil)
	return err
}

// Job is the part of a job's status the tools read.
type Job struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	Planned      int64  `json:"planned"`
	PlanningDone bool   `json:"planning_done"`
	Counts       struct {
		Pending    int64 `json:"pending"`
		Sent       int64 `json:"sent"`
		Failed     int64 `json:"failed"`
		Suppressed int64 `json:"suppressed"`
		Expired    int64 `json:"expired"`
		Ambiguous  int64 `json:"ambiguous"`
		Capped     int64 `json:"capped"`
		Skipped    int64 `json:"skipped"`
	} `json:"counts"`
	SubmittedAt time.Time  `json:"submitted_at"`
	Deadline    time.Time  `json:"deadline"`
	FirstSentAt *time.Time `json:"first_sent_at"`
	LastDoneAt  *time.Time `json:"last_done_at"`
	PerSecond   float64    `json:"per_second"`
}

// Done counts recipients with a final outcome.
func (j Job) Done() int64 {
	return j.Counts.Sent + j.Counts.Failed + j.Counts.Suppressed + j.Counts.Expired + j.Counts.Ambiguous + j.Counts.Capped + j.Counts.Skipped
}

// SubmitJob posts a job request with an idempotency key.
func (c *Client) SubmitJob(ctx context.Context, key string, req any) (Job, error) {
	var j Job
	_, err := c.JSON(ctx, http.MethodPost, "/v1/jobs", req, http.Header{"Idempotency-Key": {key}}, &j)
	return j, err
}

// GetJob reads a job's status.
func (c *Client) GetJob(ctx context.Context, id string) (Job, error) {
	var j Job
	_, err := c.Do(ctx, http.MethodGet, "/v1/jobs/"+id, "", nil, nil, &j)
	return j, err
}

// WaitJob polls until the job is complete, calling progress (if not nil)
// after every poll.
func (c *Client) WaitJob(ctx context.Context, id string, every time.Duration, progress func(Job)) (Job, error) {
	for {
		j, err := c.GetJob(ctx, id)
		if err != nil {
			return j, err
		}
		if progress != nil {
			progress(j)
		}
		if j.State == "complete" {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, fmt.Errorf("wait for job %s (%d of %d done): %w", id, j.Done(), j.Planned, ctx.Err())
		case <-time.After(every):
		}
	}
}

// OpsClient returns a client of the operator API at baseURL (through the
// edge, as Client): it sends an operator's token, role ops and no tenant.
func OpsClient(baseURL string, hc *http.Client) (*Client, error) {
	token, err := MintOpsToken(24 * time.Hour)
	if err != nil {
		return nil, err
	}
	return &Client{BaseURL: baseURL, Token: token, HTTP: hc}, nil
}

// EnsureTenant creates tenant id through the operator API, c being an
// operator's client (OpsClient), unless it exists already: an existing
// tenant keeps its settings and its state. Herald serves no partner
// request of a tenant no operator created.
func (c *Client) EnsureTenant(ctx context.Context, id string) error {
	var t struct {
		ID string `json:"id"`
	}
	_, err := c.Do(ctx, http.MethodGet, "/v1/ops/tenants/"+id, "", nil, nil, &t)
	var apiErr *APIError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound:
		return fmt.Errorf("look up tenant %s: %w", id, err)
	}
	if _, err := c.JSON(ctx, http.MethodPut, "/v1/ops/tenants/"+id, struct{}{}, nil, nil); err != nil {
		return fmt.Errorf("create tenant %s: %w", id, err)
	}
	return nil
}

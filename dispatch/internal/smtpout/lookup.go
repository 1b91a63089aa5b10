package smtpout

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Lookup asks the mail provider which Message-IDs it accepted. Providers
// with a message search API (Mailpit, Postal and Herald's own mail catcher
// among them) can answer it; with it, a send whose outcome was unknown is
// reconciled instead of being left ambiguous.
type Lookup struct {
	url    string
	client *http.Client
}

// NewLookup returns a lookup against a provider endpoint that takes
// {"message_ids": [...]} and answers {"found": [...]}.
func NewLookup(url string) *Lookup {
	return &Lookup{url: url, client: &http.Client{Timeout: 30 * time.Second}}
}

// Found returns the subset of ids the provider has.
func (l *Lookup) Found(ctx context.Context, ids []string) (map[string]bool, error) {
	body, err := json.Marshal(map[string][]string{"message_ids": ids})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("look up messages: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("look up messages: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("look up messages: %s: %s", resp.Status, b)
	}
	var out struct {
		Found []string `json:"found"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("look up messages: decode: %w", err)
	}
	found := make(map[string]bool, len(out.Found))
	for _, id := range out.Found {
		found[id] = true
	}
	return found, nil
}

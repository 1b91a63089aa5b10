package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestDenialNamesWhatIsMissing: a 403 says what the path needs, so a
// partner holding a valid token learns that the ops page takes an
// operator's role rather than guessing at a broken token.
func TestDenialNamesWhatIsMissing(t *testing.T) {
	e := newEdge(t)
	for _, tc := range []struct {
		name, path, bearer, want string
	}{
		{"no token on the partner API", "/v1/jobs", "", "needs a verified token"},
		{"a partner token on the ops page", "/ops", e.token("k1", "acme"), "needs a token whose role claim is ops"},
		{"no token on the ops page", "/ops", "", "needs a verified token (Authorization: Bearer …) and a token whose role claim is ops"},
		{"a partner token on the operator API", "/v1/ops/tenants", e.token("k1", "acme"), "needs a token whose role claim is ops"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.url+tc.path, nil)
			if tc.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct {
					Code, Message string
				}
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body.Error.Message, tc.want) {
				t.Errorf("GET %s: %d %q, want 403 saying %q", tc.path, resp.StatusCode, body.Error.Message, tc.want)
			}
		})
	}
}

package triggers

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"

	"herald/ingest/internal/store"
)

func TestSetbackParksWhatWillRecurAndRetriesTheRest(t *testing.T) {
	now := time.Date(2025, 11, 28, 9, 0, 0, 0, time.UTC)
	cfg := Config{Poll: 2 * time.Second, Attempts: 50}
	pg := func(code string) error {
		return fmt.Errorf("job of catalog change 7: insert job: %w", &pgconn.PgError{Code: code})
	}
	transient := errors.New("connection reset by peer")
	for _, tc := range []struct {
		name     string
		attempts int
		err      error
		want     store.Setback
	}{
		{"check violation", 1, pg("23514"), store.Setback{Park: true}},
		{"unique violation", 1, pg("23505"), store.Setback{Park: true}},
		{"invalid text representation", 1, pg("22P02"), store.Setback{Park: true}},
		{"statement timeout, first time", 1, pg("57014"), store.Setback{RetryAt: now.Add(2 * time.Second)}},
		{"lost connection, first time", 1, transient, store.Setback{RetryAt: now.Add(2 * time.Second)}},
		{"lost connection, third time", 3, transient, store.Setback{RetryAt: now.Add(8 * time.Second)}},
		{"lost connection, seventh time", 7, transient, store.Setback{RetryAt: now.Add(128 * time.Second)}},
		{"lost connection, as often as allowed", 50, transient, store.Setback{Park: true}},
		{"long waits stop growing", 40, transient, store.Setback{RetryAt: now.Add(maxRetryDelay)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, setback(tc.attempts, tc.err, now, cfg)); diff != "" {
				t.Errorf("setback (-want +got):\n%s", diff)
			}
		})
	}
}

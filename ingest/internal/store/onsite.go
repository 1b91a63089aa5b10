package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

var (
	//go:embed sql/onsite_messages.sql
	onsiteMessagesSQL string
	//go:embed sql/customer_exists.sql
	customerExistsSQL string
)

// OnsiteMessage is one message waiting on the partner's site for a customer.
type OnsiteMessage struct {
	ID        string          `json:"id"`
	JobID     uuid.UUID       `json:"job_id"`
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	// Seen says whether an earlier read already returned it.
	Seen bool `json:"seen"`
}

// OnsiteMessages returns up to limit of a customer's unexpired onsite
// messages, newest first, and marks them seen; ErrNotFound if the tenant
// has no such customer.
func (s *Store) OnsiteMessages(ctx context.Context, tenant, customer string, limit int) ([]OnsiteMessage, error) {
	var exists bool
	if err := s.db.QueryRow(ctx, customerExistsSQL, tenant, customer).Scan(&exists); err != nil {
		return nil, fmt.Errorf("look up customer: %w", err)
	}
	if !exists {
		return nil, ErrNotFound
	}
	rows, _ := s.db.Query(ctx, onsiteMessagesSQL, tenant, customer, limit)
	msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OnsiteMessage, error) {
		var m OnsiteMessage
		err := r.Scan(&m.ID, &m.JobID, &m.Payload, &m.CreatedAt, &m.ExpiresAt, &m.Seen)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("read onsite messages: %w", err)
	}
	return msgs, nil
}

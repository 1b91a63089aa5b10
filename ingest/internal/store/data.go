package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	//go:embed sql/get_template.sql
	getTemplateSQL string
	//go:embed sql/list_template_versions.sql
	listTemplateVersionsSQL string
	//go:embed sql/get_profile.sql
	getProfileSQL string
	//go:embed sql/get_customer.sql
	getCustomerSQL string
	//go:embed sql/erase_customer.sql
	eraseCustomerSQL string
	//go:embed sql/delete_catalog_item.sql
	deleteCatalogItemSQL string
	//go:embed sql/delete_suppression.sql
	deleteSuppressionSQL string
	//go:embed sql/suppress.sql
	suppressSQL string
	//go:embed sql/await_sends.sql
	awaitSendsSQL string
)

// ErrProtected is returned for a suppression that the partner may not lift:
// the recipient unsubscribed or complained.
var ErrProtected = errors.New("suppression set by the recipient")

// Template returns version of a template of tenant (0: the latest), or
// ErrNotFound.
func (s *Store) Template(ctx context.Context, tenant, id string, version int) (Template, error) {
	var t Template
	err := s.db.QueryRow(ctx, getTemplateSQL, tenant, id, version).Scan(&t.ID, &t.Version, &t.FromName, &t.FromEmail,
		&t.Subject, &t.Preheader, &t.HTML, &t.Text, &t.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Template{}, ErrNotFound
	}
	if err != nil {
		return Template{}, fmt.Errorf("read template: %w", err)
	}
	return t, nil
}

// TemplateVersion is one version of a template in a listing.
type TemplateVersion struct {
	Version   int
	CreatedAt time.Time
}

// TemplateVersions lists up to limit versions of a template, newest first;
// none means the tenant has no such template.
func (s *Store) TemplateVersions(ctx context.Context, tenant, id string, limit int) ([]TemplateVersion, error) {
	rows, _ := s.db.Query(ctx, listTemplateVersionsSQL, tenant, id, limit)
	vs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TemplateVersion, error) {
		var v TemplateVersion
		return v, r.Scan(&v.Version, &v.CreatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("list template versions: %w", err)
	}
	return vs, nil
}

// Profile returns the tenant's profile, or ErrNotFound before it has one.
func (s *Store) Profile(ctx context.Context, tenant string) (Profile, error) {
	var p Profile
	var secs float64
	err := s.db.QueryRow(ctx, getProfileSQL, tenant).Scan(&p.Name, &p.WebsiteURL, &p.LogoURL, &p.HeroURL, &p.PostalAddress, &secs)
	if errors.Is(err, pgx.ErrNoRows) {
		return Profile{}, ErrNotFound
	}
	if err != nil {
		return Profile{}, fmt.Errorf("read profile: %w", err)
	}
	p.DefaultDeadline = time.Duration(secs * float64(time.Second))
	return p, nil
}

// Customer is one of a tenant's customers as stored.
type Customer struct {
	ID         string
	Email      string
	FirstName  string
	LastName   string
	Locale     string
	Timezone   string
	Subscribed bool
	Consent    []byte // JSON object
	Attributes []byte // JSON object
	UpdatedAt  time.Time
}

// Customer returns one customer of tenant, or ErrNotFound.
func (s *Store) Customer(ctx context.Context, tenant, id string) (Customer, error) {
	var c Customer
	err := s.db.QueryRow(ctx, getCustomerSQL, tenant, id).Scan(&c.ID, &c.Email, &c.FirstName, &c.LastName, &c.Locale,
		&c.Timezone, &c.Subscribed, &c.Consent, &c.Attributes, &c.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Customer{}, ErrNotFound
	}
	if err != nil {
		return Customer{}, fmt.Errorf("read customer: %w", err)
	}
	return c, nil
}

// EraseCustomer removes a customer's data (see erase_customer.sql), or
// returns ErrNotFound.
func (s *Store) EraseCustomer(ctx context.Context, tenant, id string) error {
	var n int
	if err := s.db.QueryRow(ctx, eraseCustomerSQL, tenant, id).Scan(&n); err != nil {
		return fmt.Errorf("erase customer: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteCatalogItem removes an item, or returns ErrNotFound.
func (s *Store) DeleteCatalogItem(ctx context.Context, tenant, id string) error {
	tag, err := s.db.Exec(ctx, deleteCatalogItemSQL, tenant, id)
	if err != nil {
		return fmt.Errorf("delete catalog item: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteSuppression lifts a suppression the partner added. It returns
// ErrNotFound if there is none and ErrProtected if the recipient set it.
func (s *Store) DeleteSuppression(ctx context.Context, tenant, email string) error {
	var protected bool
	err := s.db.QueryRow(ctx, deleteSuppressionSQL, tenant, email).Scan(&protected)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("delete suppression: %w", err)
	case protected:
		return ErrProtected
	}
	return nil
}

// Suppress adds email to tenant's suppression list for reason
// ("unsubscribed", "bounce", "complaint"); repeating it changes nothing.
// It returns once no send to the address is under way, so that nothing is
// sent to it after Suppress returns: every later claim sees the
// suppression, and every send claimed before it has finished.
func (s *Store) Suppress(ctx context.Context, tenant, email, reason string) error {
	if _, err := s.db.Exec(ctx, suppressSQL, tenant, email, reason); err != nil {
		return fmt.Errorf("suppress: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := s.db.Exec(ctx, awaitSendsSQL, tenant, email); err != nil {
		return fmt.Errorf("wait for sends under way: %w", err)
	}
	return nil
}

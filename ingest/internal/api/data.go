package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"herald/ingest/internal/store"
)

type customerView struct {
	ID         string          `json:"id"`
	Email      string          `json:"email"`
	FirstName  string          `json:"first_name"`
	LastName   string          `json:"last_name"`
	Locale     string          `json:"locale"`
	Timezone   string          `json:"timezone,omitempty"`
	Subscribed bool            `json:"subscribed"`
	Consent    json.RawMessage `json:"consent"`
	Attributes json.RawMessage `json:"attributes"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

func (a *API) getCustomer(w http.ResponseWriter, r *http.Request, tenant string) {
	c, err := a.store.Customer(r.Context(), tenant, r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such customer")
	case err != nil:
		a.internalError(w, r, tenant, err)
	default:
		writeJSON(w, http.StatusOK, customerView{ID: c.ID, Email: c.Email, FirstName: c.FirstName, LastName: c.LastName,
			Locale: c.Locale, Timezone: c.Timezone, Subscribed: c.Subscribed, Consent: c.Consent, Attributes: c.Attributes,
			UpdatedAt: c.UpdatedAt.UTC()})
	}
}

// eraseCustomer is the right to erasure: the customer's data goes (see
// store.EraseCustomer). A suppression of their address stays.
func (a *API) eraseCustomer(w http.ResponseWriter, r *http.Request, tenant string) {
	err := a.store.EraseCustomer(r.Context(), tenant, r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such customer")
	case err != nil:
		a.internalError(w, r, tenant, err)
	default:
		a.log.InfoContext(r.Context(), "customer erased", "tenant_id", tenant)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (a *API) deleteCatalogItem(w http.ResponseWriter, r *http.Request, tenant string) {
	err := a.store.DeleteCatalogItem(r.Context(), tenant, r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such catalog item")
	case err != nil:
		a.internalError(w, r, tenant, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// deleteSuppression lifts a suppression the partner added; one the
// recipient set (unsubscribe, complaint) stays.
func (a *API) deleteSuppression(w http.ResponseWriter, r *http.Request, tenant string) {
	err := a.store.DeleteSuppression(r.Context(), tenant, r.PathValue("email"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such suppression")
	case errors.Is(err, store.ErrProtected):
		writeError(w, http.StatusConflict, "protected", "the recipient unsubscribed or complained; only they can undo it")
	case err != nil:
		a.internalError(w, r, tenant, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

package api

import (
	"errors"
	"net/http"
	"strconv"

	"herald/ingest/internal/store"
)

// getOnsite serves the partner's site: a customer's onsite messages that
// have not expired, newest first. Messages returned once are marked seen
// and say so the next time.
func (a *API) getOnsite(w http.ResponseWriter, r *http.Request, tenant string) {
	customer := r.PathValue("customer")
	if !idPattern.MatchString(customer) {
		writeError(w, http.StatusNotFound, "not_found", "no such customer")
		return
	}
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit must be between 1 and 100")
			return
		}
		limit = n
	}
	msgs, err := a.store.OnsiteMessages(r.Context(), tenant, customer, limit)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such customer")
		return
	case err != nil:
		a.internalError(w, r, tenant, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs})
}

package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"herald/ingest/internal/store"
	"herald/shared/event"
)

// Catalog trigger kinds, and their bounds.
var triggerKinds = []string{"back_in_stock", "price_drop"}

// triggerChannels are the channels a catalog trigger can send on: a
// message about one item to one customer.
var triggerChannels = []event.Channel{event.ChannelEmail, event.ChannelOnsite}

const (
	defaultLookback = 30 * 24 * time.Hour
	maxLookback     = 90 * 24 * time.Hour
)

type triggerTemplate struct {
	ID      string `json:"id"`
	Version int    `json:"version,omitempty"`
}

type catalogTriggerRequest struct {
	Channel        string          `json:"channel,omitempty"`
	Template       triggerTemplate `json:"template"`
	Lookback       string          `json:"lookback,omitempty"`
	MinDropPercent int             `json:"min_drop_percent,omitempty"`
	Deadline       string          `json:"deadline,omitempty"`
}

type catalogTriggerView struct {
	Kind           string          `json:"kind"`
	Channel        string          `json:"channel"`
	Template       triggerTemplate `json:"template"`
	Lookback       string          `json:"lookback"`
	MinDropPercent int             `json:"min_drop_percent"`
	Deadline       string          `json:"deadline,omitempty"`
}

func triggerView(t store.CatalogTrigger) catalogTriggerView {
	v := catalogTriggerView{Kind: t.Kind, Channel: t.Channel, Template: triggerTemplate{ID: t.TemplateID, Version: t.TemplateVersion},
		Lookback: shortDuration(t.Lookback), MinDropPercent: t.MinDropPercent}
	if t.Deadline > 0 {
		v.Deadline = shortDuration(t.Deadline)
	}
	return v
}

// shortDuration writes 720h rather than 720h0m0s.
func shortDuration(d time.Duration) string {
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}

func (a *API) putCatalogTrigger(w http.ResponseWriter, r *http.Request, tenant string) {
	kind := r.PathValue("kind")
	if !slices.Contains(triggerKinds, kind) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no catalog trigger kind %q: want one of %s", kind, strings.Join(triggerKinds, ", ")))
		return
	}
	var req catalogTriggerRequest
	if !decodeJSON(w, r, a.limits.MaxJSONBytes, &req) {
		return
	}
	t := store.CatalogTrigger{Kind: kind, Channel: req.Channel, TemplateID: req.Template.ID, TemplateVersion: req.Template.Version,
		Lookback: defaultLookback, MinDropPercent: req.MinDropPercent}
	var f fieldErrors
	if t.Channel == "" {
		t.Channel = string(event.ChannelEmail)
	} else if !slices.Contains(triggerChannels, event.Channel(t.Channel)) {
		f.add("channel", "must be one of %s", channelList(triggerChannels))
	}
	if !templateIDPattern.MatchString(req.Template.ID) {
		f.add("template.id", "must name a template")
	}
	checkVersion(&f, "template.version", req.Template.Version)
	if req.Lookback != "" {
		d, err := time.ParseDuration(req.Lookback)
		if err != nil || d < time.Hour || d > maxLookback {
			f.add("lookback", "must be a duration between 1h and %s, like \"720h\"", shortDuration(maxLookback))
		}
		t.Lookback = d.Truncate(time.Hour)
	}
	switch {
	case req.MinDropPercent != 0 && kind != "price_drop":
		f.add("min_drop_percent", "applies to price_drop only")
	case req.MinDropPercent < 0 || req.MinDropPercent > 99:
		f.add("min_drop_percent", "must be between 0 and 99")
	}
	if req.Deadline != "" {
		d, err := time.ParseDuration(req.Deadline)
		if err != nil || d < minLead || d > a.limits.MaxDeadline {
			f.add("deadline", "must be a duration between %s and %s, like \"4h\"", minLead, shortDuration(a.limits.MaxDeadline))
		}
		t.Deadline = d
	}
	if f.answer(w) {
		return
	}
	switch err := a.store.PutCatalogTrigger(r.Context(), tenant, t); {
	case errors.Is(err, store.ErrUnknownTemplate):
		writeError(w, http.StatusUnprocessableEntity, "unknown_template",
			fmt.Sprintf("template %q (version %d) does not exist", req.Template.ID, req.Template.Version))
	case err != nil:
		a.internalError(w, r, tenant, err)
	default:
		writeJSON(w, http.StatusOK, triggerView(t))
	}
}

func (a *API) listCatalogTriggers(w http.ResponseWriter, r *http.Request, tenant string) {
	ts, err := a.store.CatalogTriggers(r.Context(), tenant)
	if err != nil {
		a.internalError(w, r, tenant, err)
		return
	}
	views := make([]catalogTriggerView, len(ts))
	for i, t := range ts {
		views[i] = triggerView(t)
	}
	writeJSON(w, http.StatusOK, map[string]any{"triggers": views})
}

func (a *API) deleteCatalogTrigger(w http.ResponseWriter, r *http.Request, tenant string) {
	switch err := a.store.DeleteCatalogTrigger(r.Context(), tenant, r.PathValue("kind")); {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such catalog trigger")
	case err != nil:
		a.internalError(w, r, tenant, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

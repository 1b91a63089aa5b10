package api

import (
	"errors"
	"net/http"
	"time"

	"herald/ingest/internal/store"
)

type profileRequest struct {
	Name            string `json:"name"`
	WebsiteURL      string `json:"website_url"`
	LogoURL         string `json:"logo_url"`
	HeroURL         string `json:"hero_url"`
	PostalAddress   string `json:"postal_address"`
	DefaultDeadline string `json:"default_deadline"`
}

func (a *API) putProfile(w http.ResponseWriter, r *http.Request, tenant string) {
	var req profileRequest
	if !decodeJSON(w, r, a.limits.MaxJSONBytes, &req) {
		return
	}
	c := checker{}
	c.text("name", req.Name, 200, true)
	c.url("website_url", req.WebsiteURL, true)
	c.url("logo_url", req.LogoURL, false)
	c.url("hero_url", req.HeroURL, false)
	c.text("postal_address", req.PostalAddress, 500, true)
	p := store.Profile{Name: req.Name, WebsiteURL: req.WebsiteURL, LogoURL: req.LogoURL, HeroURL: req.HeroURL,
		PostalAddress: req.PostalAddress, DefaultDeadline: 4 * time.Hour}
	if req.DefaultDeadline != "" {
		d, err := time.ParseDuration(req.DefaultDeadline)
		if err != nil || d < time.Minute || d > a.limits.MaxDeadline {
			c.add("default_deadline", "must be a duration between 1m and %s, like \"4h\"", a.limits.MaxDeadline)
		}
		p.DefaultDeadline = d
	}
	if fieldsOf(c).answer(w) {
		return
	}
	if err := a.store.PutProfile(r.Context(), tenant, p); err != nil {
		a.internalError(w, r, tenant, err)
		return
	}
	writeJSON(w, http.StatusOK, profileView(p))
}

func profileView(p store.Profile) profileRequest {
	return profileRequest{Name: p.Name, WebsiteURL: p.WebsiteURL, LogoURL: p.LogoURL, HeroURL: p.HeroURL,
		PostalAddress: p.PostalAddress, DefaultDeadline: shortDuration(p.DefaultDeadline)}
}

func (a *API) getProfile(w http.ResponseWriter, r *http.Request, tenant string) {
	p, err := a.store.Profile(r.Context(), tenant)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no profile yet: PUT /v1/profile")
	case err != nil:
		a.internalError(w, r, tenant, err)
	default:
		writeJSON(w, http.StatusOK, profileView(p))
	}
}

// fieldsOf turns a checker's line errors (line 0) into field errors.
func fieldsOf(c checker) fieldErrors {
	var f fieldErrors
	for _, e := range c.errs {
		f.add(e.Field, "%s", e.Message)
	}
	return f
}

package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"

	"herald/ingest/internal/strictjson"
	"herald/shared/bodyrate"
	"herald/shared/tenantid"
	"herald/shared/unsubscribe"
)

// The public routes: the edge lets them through without a partner token
// (authorization-policy.yaml names them), so each checks its own
// credential — a signed token in the unsubscribe link, the provider's
// signature on a webhook — and answers without reading a tenant header.

var unsubscribePageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}
button{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#222;color:#fff;cursor:pointer}</style>
</head><body>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .Confirm}}<form method="post" action="">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button>
</form>{{end}}
</body></html>
`))

type unsubscribePage struct {
	Title, Message string
	Confirm        bool
}

func writePage(w http.ResponseWriter, status int, p unsubscribePage) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = unsubscribePageTmpl.Execute(w, p)
}

// verifyToken checks the token of the path; nil means the link is not one
// Herald made.
func (a *API) verifyToken(r *http.Request) *unsubscribe.Claim {
	if a.cfg.Unsubscribe == nil {
		return nil
	}
	c, err := a.cfg.Unsubscribe.Verify(r.PathValue("token"))
	if err != nil {
		return nil
	}
	if _, err := mail.ParseAddress(c.Email); err != nil || !tenantid.Valid(c.Tenant) {
		return nil
	}
	return &c
}

var invalidLink = unsubscribePage{Title: "This link does not work",
	Message: "The unsubscribe link is incomplete or was not made by us. Use the link in the most recent email you received."}

// unsubscribePage is the landing page of the List-Unsubscribe link and of
// the unsubscribe link in the message body. It changes nothing: mail
// scanners fetch links, so only the POST of its button (or a mail client's
// RFC 8058 one-click POST) unsubscribes.
func (a *API) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	c := a.verifyToken(r)
	if c == nil {
		writePage(w, http.StatusNotFound, invalidLink)
		return
	}
	writePage(w, http.StatusOK, unsubscribePage{Title: "Unsubscribe",
		Message: fmt.Sprintf("Stop emails to %s?", c.Email), Confirm: true})
}

// unsubscribe is the RFC 8058 one-click endpoint: a POST whose form body
// is List-Unsubscribe=One-Click. It suppresses the token's address for the
// token's tenant; dispatch re-checks suppressions when it claims each
// recipient, so no later send reaches the address. Repeating it changes
// nothing. It sets no cookie and needs none.
func (a *API) unsubscribe(w http.ResponseWriter, r *http.Request) {
	c := a.verifyToken(r)
	if c == nil {
		writePage(w, http.StatusNotFound, invalidLink)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	form, perr := url.ParseQuery(string(body))
	if err != nil || perr != nil || form.Get("List-Unsubscribe") != "One-Click" {
		writePage(w, http.StatusBadRequest, unsubscribePage{Title: "Unsubscribe",
			Message: "This request did not ask to unsubscribe (the body must be List-Unsubscribe=One-Click)."})
		return
	}
	if err := a.store.Suppress(r.Context(), c.Tenant, c.Email, "unsubscribed"); err != nil {
		a.log.ErrorContext(r.Context(), "unsubscribe failed", "tenant_id", c.Tenant, "job_id", c.Job, "error", err)
		writePage(w, http.StatusServiceUnavailable, unsubscribePage{Title: "Please try again",
			Message: "We could not record your request just now. Please try again in a minute."})
		return
	}
	a.log.InfoContext(r.Context(), "unsubscribed", "tenant_id", c.Tenant, "job_id", c.Job)
	writePage(w, http.StatusOK, unsubscribePage{Title: "You are unsubscribed",
		Message: fmt.Sprintf("%s will get no more of these emails.", c.Email)})
}

// WebhookSignatureHeader carries the ESP's signature: "t=<unix seconds>,
// v1=<hex HMAC-SHA256 of "<t>.<body>" under the shared secret>".
const WebhookSignatureHeader = "Herald-Signature"

// webhookTolerance is how old a signed webhook may be (replay window).
const webhookTolerance = 5 * time.Minute

type webhookBody struct {
	Events []webhookEvent `json:"events"`
}

type webhookEvent struct {
	// Type is bounce or complaint.
	Type string `json:"type"`
	// Tenant and Email come from the metadata Herald attached to the
	// message, echoed by the provider.
	Tenant string `json:"tenant"`
	Email  string `json:"email"`
	// Permanent marks a hard bounce; soft bounces suppress nothing.
	Permanent bool `json:"permanent"`
}

// espWebhook takes an HTTP ESP's bounce and complaint events and feeds
// suppression: hard bounces and complaints suppress the address for the
// tenant. The body must carry a valid signature.
func (a *API) espWebhook(w http.ResponseWriter, r *http.Request) {
	if a.cfg.WebhookSecret == "" {
		writeError(w, http.StatusNotFound, "not_found", "no webhook is configured")
		return
	}
	if !requireContentType(w, r, "application/json") {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.limits.MaxJSONBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", tooBig.Limit))
		return
	case errors.Is(err, bodyrate.ErrTooSlow):
		writeTooSlow(w, err)
		return
	}
	if err != nil || !validSignature(a.cfg.WebhookSecret, r.Header.Get(WebhookSignatureHeader), body, a.now()) {
		writeError(w, http.StatusUnauthorized, "invalid_signature", "missing, wrong or expired "+WebhookSignatureHeader)
		return
	}
	var in webhookBody
	var f fieldErrors
	var refused *strictjson.ValueError
	switch err := strictjson.Decode(body, &in); {
	case errors.As(err, &refused):
		f.add(refused.Path, "%s", refused.Reason)
		f.answer(w)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid_json", describeJSONError(err))
		return
	}
	for i, e := range in.Events {
		if e.Type != "bounce" && e.Type != "complaint" {
			f.add(fmt.Sprintf("events[%d].type", i), "must be bounce or complaint")
		}
		if !tenantid.Valid(e.Tenant) {
			f.add(fmt.Sprintf("events[%d].tenant", i), "is not a tenant id")
		}
		if addr, err := mail.ParseAddress(e.Email); err != nil || addr.Address != e.Email {
			f.add(fmt.Sprintf("events[%d].email", i), "is not an email address")
		}
	}
	if f.answer(w) {
		return
	}
	suppressed := 0
	for _, e := range in.Events {
		reason := "complaint"
		if e.Type == "bounce" {
			if !e.Permanent {
				continue
			}
			reason = "bounce"
		}
		if err := a.store.Suppress(r.Context(), e.Tenant, e.Email, reason); err != nil {
			a.internalError(w, r, e.Tenant, err)
			return
		}
		suppressed++
	}
	writeJSON(w, http.StatusOK, map[string]int{"events": len(in.Events), "suppressed": suppressed})
}

// SignWebhook returns the Herald-Signature value for body at t, as the ESP
// computes it.
func SignWebhook(secret string, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(webhookMAC(secret, ts, body))
}

func webhookMAC(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

func validSignature(secret, header string, body []byte, now time.Time) bool {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(sec, 0)); d > webhookTolerance || d < -webhookTolerance {
		return false
	}
	want := webhookMAC(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return true
		}
	}
	return false
}

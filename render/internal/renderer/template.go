package renderer

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"herald/render/internal/fasttmpl"
	"herald/shared/emailtemplate"
	eventv1 "herald/shared/event/v1"
	"herald/shared/tmplbudget"
)

//go:embed sql/template.sql
var templateSQL string

// ErrRenderBudget marks a recipient whose render ran out of its budget
// (Config.Budget): that recipient fails with the reason, and nobody else.
var ErrRenderBudget = errors.New("render budget exceeded")

type templateKey struct {
	tenant, id string
	version    int32
}

// compiled is a job's template, checked by emailtemplate.Parse (the same
// checks as at upload) and compiled for the render engine, with the
// tenant's brand.
type compiled struct {
	tmpl      *emailtemplate.Template // the reference: From header, checks
	subject   *fasttmpl.Template
	preheader *fasttmpl.Template
	html      *fasttmpl.Template
	text      *fasttmpl.Template
	brand     emailtemplate.Brand
	// domain is the sender's domain, used in Message-IDs.
	domain string
}

// errNoTemplate means a job's template version is gone; every recipient of
// the batch fails with that reason.
var errNoTemplate = errors.New("template version not found")

// compile checks src as emailtemplate.Parse does, within budget, and
// compiles each part. The compiled engine is byte-identical to
// html/template and text/template; a part it cannot compile runs on them
// (fasttmpl's fallback), within the same budget.
func compile(src emailtemplate.Source, budget emailtemplate.Budget) (*compiled, error) {
	t, err := emailtemplate.Parse(src, budget)
	if err != nil {
		return nil, err
	}
	c := &compiled{tmpl: t, domain: src.FromEmail[strings.LastIndexByte(src.FromEmail, '@')+1:]}
	for _, p := range []struct {
		out  **fasttmpl.Template
		name string
		src  string
		html bool
	}{
		{&c.subject, "subject", src.Subject, false},
		{&c.preheader, "preheader", src.Preheader, false},
		{&c.html, "html", src.HTML, true},
		{&c.text, "text", src.Text, false},
	} {
		var err error
		if p.html {
			*p.out, err = fasttmpl.Compile(p.name, p.src)
		} else {
			*p.out, err = fasttmpl.CompileText(p.name, p.src)
		}
		if err != nil {
			return nil, fmt.Errorf("compile %s: %w", p.name, err)
		}
	}
	return c, nil
}

// fallbacks lists the parts that run on html/template or text/template.
func (c *compiled) fallbacks() map[string]string {
	out := map[string]string{}
	for name, t := range map[string]*fasttmpl.Template{"subject": c.subject, "preheader": c.preheader, "html": c.html, "text": c.text} {
		if !t.Fast() {
			out[name] = t.FallbackReason()
		}
	}
	return out
}

// template returns the job's compiled template; templates are immutable per
// version, so a compiled one is cached for the life of the process.
func (r *Renderer) template(ctx context.Context, job *eventv1.Job) (*compiled, error) {
	key := templateKey{job.TenantId, job.TemplateId, job.TemplateVersion}
	if c, ok := r.templates.Load(key); ok {
		return c.(*compiled), nil
	}
	var src emailtemplate.Source
	var b emailtemplate.Brand
	err := r.db.QueryRow(ctx, templateSQL, key.tenant, key.id, key.version).Scan(&src.FromName, &src.FromEmail,
		&src.Subject, &src.Preheader, &src.HTML, &src.Text, &b.Name, &b.URL, &b.LogoURL, &b.HeroURL, &b.Address)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoTemplate
	}
	if err != nil {
		return nil, fmt.Errorf("load template: %w", err)
	}
	c, err := compile(src, r.cfg.Budget)
	if err != nil {
		return nil, fmt.Errorf("parse stored template %s v%d: %w", key.id, key.version, err)
	}
	c.brand = b
	if fb := c.fallbacks(); len(fb) > 0 {
		r.log.InfoContext(ctx, "template parts run on the standard engine", "tenant_id", key.tenant,
			"template_id", key.id, "template_version", key.version, "fallbacks", fb)
	}
	r.templates.Store(key, c)
	return c, nil
}

// parts is one recipient's rendered parts, in buffers reused across
// recipients.
type parts struct {
	subject, preheader string
	line               bytes.Buffer
	html, text         bytes.Buffer
}

// render renders d's parts into p exactly as emailtemplate.Template.Render
// does (subject and preheader first, single-lined, so the bodies can show
// them), within limits.
func (c *compiled) render(d *emailtemplate.Data, p *parts, limits tmplbudget.Limits) error {
	exec := func(name string, t *fasttmpl.Template, buf *bytes.Buffer) error {
		buf.Reset()
		if err := t.ExecuteLimited(buf, d, limits); err != nil {
			if tmplbudget.Exceeded(err) != "" {
				return fmt.Errorf("render %s: %w: %w", name, ErrRenderBudget, err)
			}
			return fmt.Errorf("render %s: %w", name, err)
		}
		return nil
	}
	if err := exec("subject", c.subject, &p.line); err != nil {
		return err
	}
	d.Subject = emailtemplate.OneLine(p.line.String())
	if err := exec("preheader", c.preheader, &p.line); err != nil {
		return err
	}
	d.Preheader = emailtemplate.OneLine(p.line.String())
	p.subject, p.preheader = d.Subject, d.Preheader
	if err := exec("html", c.html, &p.html); err != nil {
		return err
	}
	return exec("text", c.text, &p.text)
}

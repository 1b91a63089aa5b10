// Package emailtemplate is the contract between a partner's email template
// and Herald: the data a template sees, how a template is parsed and checked
// when it is uploaded, and how it renders one recipient's subject, HTML and
// text within a budget (Budget) of steps, bytes and time. ingest uses it to
// reject a bad template at upload and to preview one; render uses it to
// check a template before it compiles it.
package emailtemplate

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"net/mail"
	"strings"
	texttemplate "text/template"
	"time"

	"herald/shared/tmplbudget"
)

// Data is what a template is executed on. Customer and Recipient vary per
// recipient; Items are the products picked for the recipient; Brand and Job
// are the same for the whole job.
type Data struct {
	Subject   string
	Preheader string
	Customer  Customer
	Brand     Brand
	Job       Job
	Recipient Recipient
	Items     []Item
}

// Customer is the recipient as the partner described them.
type Customer struct {
	ID        string
	FirstName string
	LastName  string
	Email     string
	Locale    string
}

// Brand is the tenant's profile.
type Brand struct {
	Name    string
	URL     string
	LogoURL string
	HeroURL string
	Address string
}

// Job describes the send.
type Job struct {
	ID       string
	Campaign string
	HeroAlt  string
	Year     int
}

// Recipient holds the per-recipient links Herald adds.
type Recipient struct {
	ID             string
	UnsubscribeURL string
	PreferencesURL string
	OpenPixelURL   string
}

// Item is one product card.
type Item struct {
	SKU      string
	Title    string
	Brand    string
	ImageURL string
	URL      string
	Price    string
	WasPrice string
	Badge    string
	Rating   float64
	Stars    string
	Reviews  int
	Reason   string
	// RowStart and RowEnd mark the first and last card of a two-card row.
	RowStart bool
	RowEnd   bool
}

// Limits on what a partner may upload.
const (
	MaxHTMLBytes    = 256 << 10
	MaxTextBytes    = 64 << 10
	MaxSubjectBytes = 1000
	// MaxFromNameBytes keeps the From header within a line (RFC 5322:
	// 998 bytes) even when the name is one word and cannot be folded.
	MaxFromNameBytes = 200
	MaxOutputBytes   = 1 << 20
)

// Budget bounds one recipient's render of a template. The same budget
// holds wherever a partner template runs: the sample render when it is
// uploaded, a preview, and every send. A zero field is no limit.
type Budget struct {
	// Steps bounds each part's steps: one for the part, one for every
	// template call and loop iteration.
	Steps int
	// Bytes bounds each part's output, and any string a builtin such as
	// printf builds.
	Bytes int
	// Time bounds the render of all the parts together.
	Time time.Duration
}

// DefaultBudget is the budget partner templates render within. A typical
// email renders in tens of microseconds and a few dozen steps; 24 products
// (the most a job picks) in two nested loops take 600.
var DefaultBudget = Budget{Steps: 10_000, Bytes: MaxOutputBytes, Time: 50 * time.Millisecond}

// Limits are the limits of each part of a render that started at start.
func (b Budget) Limits(start time.Time) tmplbudget.Limits {
	lim := tmplbudget.Limits{Steps: b.Steps, Bytes: b.Bytes}
	if b.Time > 0 {
		lim.Deadline = start.Add(b.Time)
	}
	return lim
}

// BudgetError is a render of a part that ran out of its budget.
type BudgetError struct {
	Part   string // subject, preheader, html or text
	Budget string // what ran out: steps, bytes or time (tmplbudget.Exceeded)
	err    error
}

func (e *BudgetError) Error() string { return "render " + e.Part + ": " + e.err.Error() }

func (e *BudgetError) Unwrap() error { return e.err }

// Source is a template as uploaded.
type Source struct {
	FromName  string
	FromEmail string
	Subject   string
	Preheader string
	HTML      string
	Text      string
}

// Template is a parsed, checked template, safe for concurrent use.
type Template struct {
	From      string // the RFC 5322 From header value
	FromEmail string
	subject   *tmplbudget.Runner // text/template
	preheader *tmplbudget.Runner // text/template
	html      *tmplbudget.Runner // html/template
	text      *tmplbudget.Runner // text/template
	budget    Budget
}

// ProblemError describes everything wrong with an uploaded template.
type ProblemError struct {
	Problems []string
	err      error // what failed the sample render, if that is the problem
}

func (e *ProblemError) Error() string { return "invalid template: " + strings.Join(e.Problems, "; ") }

// Unwrap is what failed the sample render (a *BudgetError, say), or nil.
func (e *ProblemError) Unwrap() error { return e.err }

// Parse checks and parses src, to render within budget. Every part is
// vetted as untrusted code first (Check: allow-listed functions, loops
// bounded by the data, no recursion, template calls that stay few).
// Besides syntax it executes every part once on Sample data within budget,
// which is when html/template finds contextual-escaping errors (an action
// inside an unquoted attribute that changes context, say), so a template
// that passes here does not fail for structural reasons at send time.
func Parse(src Source, budget Budget) (*Template, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	t := &Template{FromEmail: src.FromEmail}
	addr, err := mail.ParseAddress(src.FromEmail)
	switch {
	case err != nil || addr.Address != src.FromEmail:
		add("from_email %q is not an email address", src.FromEmail)
	case strings.ContainsAny(src.FromName, "\r\n"):
		add("from_name must not contain line breaks")
	case len(src.FromName) > MaxFromNameBytes:
		add("from_name must be at most %d bytes", MaxFromNameBytes)
	default:
		t.From = (&mail.Address{Name: src.FromName, Address: src.FromEmail}).String()
	}
	if len(src.Subject) > MaxSubjectBytes || len(src.Preheader) > MaxSubjectBytes {
		add("subject and preheader must be at most %d bytes", MaxSubjectBytes)
	}
	if strings.TrimSpace(src.Subject) == "" {
		add("subject is empty")
	}
	if len(src.HTML) > MaxHTMLBytes {
		add("html is %d bytes, more than %d", len(src.HTML), MaxHTMLBytes)
	}
	if strings.TrimSpace(src.HTML) == "" {
		add("html is empty")
	}
	if len(src.Text) > MaxTextBytes {
		add("text is %d bytes, more than %d", len(src.Text), MaxTextBytes)
	}
	if len(problems) > 0 {
		return nil, &ProblemError{Problems: problems}
	}
	for _, part := range []struct{ name, src string }{
		{"subject", src.Subject}, {"preheader", src.Preheader}, {"html", src.HTML}, {"text", src.Text},
	} {
		problems = append(problems, Check(part.name, part.src)...)
	}
	if len(problems) > 0 {
		return nil, &ProblemError{Problems: problems}
	}
	t.budget = budget
	parseText := func(name, s string) *tmplbudget.Runner {
		tt, err := texttemplate.New(name).Option("missingkey=error").Parse(s)
		if err == nil {
			var r *tmplbudget.Runner
			if r, err = tmplbudget.NewText(tt, nil); err == nil {
				return r
			}
		}
		add("%s: %v", name, err)
		return nil
	}
	t.subject = parseText("subject", src.Subject)
	t.preheader = parseText("preheader", src.Preheader)
	t.text = parseText("text", src.Text)
	ht, err := htmltemplate.New("html").Option("missingkey=error").Parse(src.HTML)
	if err == nil {
		t.html, err = tmplbudget.NewHTML(ht, nil)
	}
	if err != nil {
		add("html: %v", err)
	}
	if len(problems) > 0 {
		return nil, &ProblemError{Problems: problems}
	}
	// The parts share one deadline: ready them all before the clock
	// starts (see tmplbudget.Runner.Prepare).
	for _, r := range []*tmplbudget.Runner{t.subject, t.preheader, t.html, t.text} {
		if err := r.Prepare(); err != nil {
			return nil, err
		}
	}
	var out Rendered
	if err := t.Render(Sample(), &out); err != nil {
		return nil, &ProblemError{Problems: []string{err.Error()}, err: err}
	}
	return t, nil
}

// Rendered is one recipient's rendered parts.
type Rendered struct {
	Subject string
	HTML    bytes.Buffer
	Text    bytes.Buffer
}

// Render renders d into out, reusing out's buffers, within the budget the
// template was parsed with; a part that runs out of it fails the render
// with a *BudgetError. d.Subject and d.Preheader are filled from the
// template's own subject and preheader first, so the HTML can show them.
func (t *Template) Render(d *Data, out *Rendered) error {
	lim := t.budget.Limits(time.Now())
	exec := func(part string, r *tmplbudget.Runner, buf *bytes.Buffer) error {
		buf.Reset()
		if err := r.Execute(buf, d, lim); err != nil {
			if b := tmplbudget.Exceeded(err); b != "" {
				return &BudgetError{Part: part, Budget: b, err: err}
			}
			return fmt.Errorf("render %s: %w", part, err)
		}
		return nil
	}
	var line bytes.Buffer
	if err := exec("subject", t.subject, &line); err != nil {
		return err
	}
	d.Subject = OneLine(line.String())
	if err := exec("preheader", t.preheader, &line); err != nil {
		return err
	}
	d.Preheader = OneLine(line.String())
	out.Subject = d.Subject
	if err := exec("html", t.html, &out.HTML); err != nil {
		return err
	}
	return exec("text", t.text, &out.Text)
}

// OneLine makes a rendered subject safe for a header: no line breaks or
// other control characters, no surrounding space.
func OneLine(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s))
}

// Sample is the data a template is checked with at upload and previewed with.
func Sample() *Data {
	items := make([]Item, 6)
	for i := range items {
		items[i] = Item{
			SKU: fmt.Sprintf("SKU-%03d", i+1), Title: "Sample product", Brand: "Brand",
			ImageURL: "https://cdn.example.com/p.jpg", URL: "https://shop.example.com/p",
			Price: "$19.99", WasPrice: "$29.99", Badge: "-33%", Rating: 4.5, Stars: "★★★★☆",
			Reviews: 12, Reason: "Recommended for you", RowStart: i%2 == 0, RowEnd: i%2 == 1,
		}
	}
	return &Data{
		Customer:  Customer{ID: "c-1", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com", Locale: "en"},
		Brand:     Brand{Name: "Brand", URL: "https://shop.example.com", LogoURL: "https://cdn.example.com/logo.png", HeroURL: "https://cdn.example.com/hero.jpg", Address: "1 Main St"},
		Job:       Job{ID: "job-1", Campaign: "sample", HeroAlt: "Sale", Year: 2026},
		Recipient: Recipient{ID: "r-1", UnsubscribeURL: "https://mail.example.com/u/x", PreferencesURL: "https://mail.example.com/p/x", OpenPixelURL: "https://mail.example.com/o/x.gif"},
		Items:     items,
	}
}

package renderer

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"

	"herald/render/internal/email"
	"herald/shared/emailtemplate"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

// BenchmarkRenderEmail measures a whole email per recipient on the
// reference workload (subject, preheader, 12 KB HTML, text, MIME), batches
// of 1,000 recipients, in one run for both engines:
//
//   - std: html/template and text/template (emailtemplate.Render), then MIME;
//   - herald: what render does (compiled templates, same MIME).
//
// Each reports ns/email (for std, ns/op is per email), cpu-ns/email (the
// process's CPU time, steadier on a shared machine) and, for herald,
// wire-bytes/email: the batch as it goes to dispatch, zstd-compressed.
func BenchmarkRenderEmail(b *testing.B) {
	r := testRenderer(b)
	c := mustCompile(b, referenceSource(b))
	in := referenceBatch(1000, event.ChannelEmail)

	b.Run("std", func(b *testing.B) {
		items := make([]emailtemplate.Item, len(in.Products))
		for i, p := range in.Products {
			items[i] = item(p)
		}
		var out emailtemplate.Rendered
		var buf []byte
		b.ReportAllocs()
		n := 0
		cpu := processCPU()
		for b.Loop() {
			p := in.Recipients[n%len(in.Recipients)]
			n++
			d := &emailtemplate.Data{}
			if err := r.fill(d, in.Job, c, p.Recipient, r.now()); err != nil {
				b.Fatal(err)
			}
			for k, idx := range p.Products {
				it := items[idx]
				it.RowStart, it.RowEnd, it.Reason = k%2 == 0, k%2 == 1, reason(in.Strategies[p.ProductStrategies[k]])
				d.Items = append(d.Items, it)
			}
			if err := c.tmpl.Render(d, &out); err != nil {
				b.Fatal(err)
			}
			rec := p.Recipient
			buf = email.AppendMIME(buf[:0], &email.Message{From: c.tmpl.From,
				To:      mail.Address{Name: strings.TrimSpace(rec.FirstName + " " + rec.LastName), Address: rec.Email},
				Subject: out.Subject, MessageID: "x@acme-outfitters.example", Date: r.now(),
				UnsubscribeURL: d.Recipient.UnsubscribeURL, HTML: out.HTML.Bytes(), Text: out.Text.Bytes()})
			_ = bytes.Clone(buf)
		}
		b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/email")
	})

	b.Run("herald", func(b *testing.B) {
		b.ReportAllocs()
		var last *eventv1.DispatchBatch
		cpu := processCPU()
		for b.Loop() {
			out, err := r.renderWith(c, in, &eventv1.DispatchBatch{Job: in.Job})
			if err != nil {
				b.Fatal(err)
			}
			last = out
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(in.Recipients)), "ns/email")
		b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N*len(in.Recipients)), "cpu-ns/email")
		b.ReportMetric(float64(wireBytes(b, last))/float64(len(in.Recipients)), "wire-bytes/email")
	})
}

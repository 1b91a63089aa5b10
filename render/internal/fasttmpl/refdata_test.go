package fasttmpl

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"herald/shared/emailtemplate"
)

// benchDir holds the reference render workload: a Black Friday email in
// html/template syntax and one recipient's data.
const benchDir = "testdata"

func readBench(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(benchDir, name))
	if err != nil {
		t.Fatalf("reading reference workload: %v", err)
	}
	return b
}

func loadReference(t testing.TB) (src string, data *emailtemplate.Data) {
	t.Helper()
	src = string(readBench(t, "reference-email.html.tmpl"))
	data = new(emailtemplate.Data)
	if err := json.Unmarshal(readBench(t, "reference-data.json"), data); err != nil {
		t.Fatal(err)
	}
	return src, data
}

// buildJob creates a job's worth of recipients: nRecipients recipients that
// each get 6 products drawn from a shared pool of nProducts, with the brand
// and job from the reference data.
func buildJob(base *emailtemplate.Data, nProducts, nRecipients int) []*emailtemplate.Data {
	pool := make([]emailtemplate.Item, nProducts)
	for i := range pool {
		p := base.Items[i%len(base.Items)]
		p.SKU = fmt.Sprintf("SKU-%05d-%02d", 31337+7*i, i%100)
		p.Title = fmt.Sprintf("%s #%d", p.Title, i)
		p.URL = fmt.Sprintf("%s-%d", p.URL, i)
		p.ImageURL = fmt.Sprintf("https://cdn.acme-outfitters.example/images/products/%s/main_520x520.jpg?v=%d", p.SKU, i%4)
		p.Price = fmt.Sprintf("$%d.%02d", 20+i, (i*37)%100)
		if i%3 == 1 {
			p.WasPrice, p.Badge = "", ""
		} else {
			p.WasPrice, p.Badge = fmt.Sprintf("$%d.99", 40+i), fmt.Sprintf("-%d%%", 10+i%50)
		}
		p.Rating = 3 + float64(i%20)/10
		p.Reviews = 17 * (i + 1)
		pool[i] = p
	}
	first := []string{"Charlotte", "Zoë", "O'Neil", "Ana <b>", "Łukasz", "Renée", "Björn", "Tomás"}
	out := make([]*emailtemplate.Data, nRecipients)
	for r := range out {
		e := *base
		name := first[r%len(first)]
		id := fmt.Sprintf("r_%010d", 1234574+r)
		e.Subject = fmt.Sprintf("%s, your Black Friday picks are here", name)
		e.Customer = emailtemplate.Customer{FirstName: name, Email: fmt.Sprintf("%s+%d@example.com", "user.o'brien", r), Locale: []string{"en", "de", "fr"}[r%3]}
		e.Recipient = emailtemplate.Recipient{
			ID:             id,
			UnsubscribeURL: fmt.Sprintf("https://email.acme-outfitters.example/u/%s/%08x", id, r*2654435761),
			PreferencesURL: fmt.Sprintf("https://email.acme-outfitters.example/p/%s/%08x", id, r*2654435761),
			OpenPixelURL:   fmt.Sprintf("https://email.acme-outfitters.example/o/%s/%08x.gif", id, r*2654435761),
		}
		e.Items = make([]emailtemplate.Item, 6)
		for k := range e.Items {
			it := pool[(r*7+k*11)%len(pool)]
			it.RowStart, it.RowEnd = k%2 == 0, k%2 == 1
			it.Reason = fmt.Sprintf("Because you viewed %s", pool[(r+k)%len(pool)].Title)
			e.Items[k] = it
		}
		out[r] = &e
	}
	return out
}

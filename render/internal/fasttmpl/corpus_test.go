package fasttmpl

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/shared/emailtemplate"
)

// adversarial holds string values that exercise every escaper's corner cases.
var adversarial = []string{
	"",
	"plain",
	`<script>alert("x")</script>`,
	"\"'&<>+=`",
	"javascript:alert(1)",
	"JaVaScRiPt:alert(1)",
	"https://example.com/a b?c=d&e=f#g",
	"%41%zz%4",
	"\x00nul\x00",
	"line\u2028sep\u2029end",
	"unicode ★ é 日本 \U0001F600",
	"expression(alert(1))",
	"-moz-binding:url(x)",
	"a.png 1x, b.png 2x",
	"/* */ -- ]]> </script><!--",
	"\xff\xfe invalid utf8 \xc3",
	"\ufdd0\ufffe\uffff",
	"url(evil)",
	"{{.}} $ { } \\ `tmpl`",
	" \t\n\r\f\v spaces ",
	"mailto:foo@bar.example",
	"//evil.example",
	"data:text/html,<x>",
	"red",
	"#f00",
	"10px",
	"a\\62 c",
	"\\3c script",
	"onclick",
	"HREF",
	"style",
	"data-x",
	"ex\\70ression",
	"x y",
	"1e309",
	"100%",
	"a=b&c=d",
	"?#",
	"\u00a0nbsp",
	"\u0085",
}

var urls = []string{
	"https://www.acme-outfitters.example/p/men's-merino-crew-sweater",
	"https://cdn.example/img.png?v=3&w=100",
	"/relative/path?q=a b",
	"javascript:alert(1)",
	"HTTP://EXAMPLE.COM/%7Euser/%zz",
	"mailto:x@y.example?subject=hi there",
	"",
	"ftp://old.example/file",
	"https://x.example/a,b c/(d)'e'",
	"#frag",
}

var numbers = []int{0, 1, -1, 7, 42, 255, 256, 100000, -2147483648}
var floats = []float64{0, 3.14159, -2.5, 1e21, 1e-7, 4.25, 0.1, 100, math.Inf(1), math.NaN(), math.Copysign(0, -1)}

// corpusVariant builds the i-th data set; successive variants rotate through
// the adversarial values independently per field, and every sixth has no
// items.
func corpusVariant(i int) *emailtemplate.Data {
	a := func(k int) string { return adversarial[(i*7+k)%len(adversarial)] }
	skus := []string{"a", "b", "c", "d", "e"}
	var items []emailtemplate.Item
	for k := 0; k < (i%4)+2; k++ {
		it := emailtemplate.Item{
			SKU: skus[k%len(skus)], Title: a(k + 11), Brand: a(k + 3), ImageURL: a(k + 17),
			URL: urls[(i+k)%len(urls)], Price: a(k + 13), WasPrice: a(k + 14), Badge: a(k + 15),
			Rating: floats[(i+k)%len(floats)], Stars: a(k + 16), Reviews: numbers[(i+k)%len(numbers)],
			Reason: a(k + 19), RowStart: k%2 == 0, RowEnd: k%2 == 1,
		}
		if k%3 == 1 {
			it.WasPrice, it.Reason = "", ""
		}
		items = append(items, it)
	}
	if i%5 == 0 {
		items[0].SKU = a(1)
	}
	if i%6 == 5 {
		items = nil
	}
	return &emailtemplate.Data{
		Subject: a(0), Preheader: a(1),
		Customer: emailtemplate.Customer{ID: a(2), FirstName: a(3), LastName: a(4), Email: a(5), Locale: a(6)},
		Brand: emailtemplate.Brand{Name: a(7), URL: urls[i%len(urls)], LogoURL: a(8),
			HeroURL: urls[(i+3)%len(urls)], Address: a(9)},
		Job: emailtemplate.Job{ID: a(10), Campaign: a(11), HeroAlt: a(12), Year: numbers[i%len(numbers)]},
		Recipient: emailtemplate.Recipient{ID: a(13), UnsubscribeURL: urls[(i+5)%len(urls)],
			PreferencesURL: a(14), OpenPixelURL: urls[(i+7)%len(urls)]},
		Items: items,
	}
}

// corpusVariants is the data every corpus template is rendered with.
func corpusVariants() []*emailtemplate.Data {
	out := make([]*emailtemplate.Data, 48)
	for i := range out {
		out[i] = corpusVariant(i)
	}
	return out
}

// expectedFallback lists corpus templates that are expected to run on
// html/template rather than the compiled engine, and why.
var expectedFallback = map[string]string{
	"48_derived_fallback": "template called inside <script> is derived by html/template",
}

type corpusTemplate struct {
	name, src string
}

func loadCorpus(t testing.TB) []corpusTemplate {
	t.Helper()
	files, err := filepath.Glob("testdata/corpus/*.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var out []corpusTemplate
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, corpusTemplate{strings.TrimSuffix(filepath.Base(f), ".tmpl"), string(b)})
	}
	ref := readBench(t, "reference-email.html.tmpl")
	out = append(out, corpusTemplate{"44_reference", string(ref)})
	if len(out) < 40 {
		t.Fatalf("corpus has %d templates, want at least 40", len(out))
	}
	return out
}

// renderBoth renders data with html/template and fasttmpl and reports a
// difference in output or in failure.
func renderBoth(ht *template.Template, ft *Template, data *emailtemplate.Data) (diff string) {
	var want, got bytes.Buffer
	werr := ht.Execute(&want, data)
	gerr := ft.Execute(&got, data)
	if (werr == nil) != (gerr == nil) {
		return fmt.Sprintf("error mismatch: html/template: %v; fasttmpl: %v", werr, gerr)
	}
	if d := cmp.Diff(want.String(), got.String()); d != "" {
		return fmt.Sprintf("output mismatch (-html/template +fasttmpl):\n%s", d)
	}
	return ""
}

// TestCorpusDifferential renders every corpus template on every data
// variant with html/template and with the compiled engine.
func TestCorpusDifferential(t *testing.T) {
	variants := corpusVariants()
	_, base := loadReference(t)
	refJob := append(buildJob(base, 50, 40), base)
	for _, ct := range loadCorpus(t) {
		t.Run(ct.name, func(t *testing.T) {
			ht, err := template.New(ct.name).Parse(ct.src)
			if err != nil {
				t.Fatal(err)
			}
			ft, err := Compile(ct.name, ct.src)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if _, ok := expectedFallback[ct.name]; ok {
				if ft.Fast() {
					t.Error("expected fallback to html/template")
				}
			} else if !ft.Fast() {
				t.Errorf("unexpected fallback: %s", ft.FallbackReason())
			}
			data := variants
			if ct.name == "44_reference" {
				data = refJob
			}
			for i, d := range data {
				if diff := renderBoth(ht, ft, d); diff != "" {
					t.Errorf("variant %d: %s", i, diff)
				}
			}
		})
	}
}

// TestReferenceDifferential renders the reference template for a whole job
// of recipients and compares every email.
func TestReferenceDifferential(t *testing.T) {
	src, base := loadReference(t)
	ht := template.Must(template.New("ref").Parse(src))
	ft, err := Compile("ref", src)
	if err != nil {
		t.Fatal(err)
	}
	if !ft.Fast() {
		t.Fatalf("reference template fell back: %s", ft.FallbackReason())
	}
	for i, e := range append(buildJob(base, 50, 200), base) {
		if diff := renderBoth(ht, ft, e); diff != "" {
			t.Fatalf("recipient %d: %s", i, diff)
		}
	}
	var want bytes.Buffer
	if err := ht.Execute(&want, base); err != nil {
		t.Fatal(err)
	}
	if want.Len() != 12092 {
		t.Errorf("reference output is %d bytes, README says 12,092", want.Len())
	}
}

// TestConcurrentExecute renders from many goroutines at once (run with
// -race) to check that pooled render state is not shared.
func TestConcurrentExecute(t *testing.T) {
	src, base := loadReference(t)
	job := buildJob(base, 50, 64)
	ht := template.Must(template.New("ref").Parse(src))
	ft, err := Compile("ref", src)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]string, len(job))
	for i, e := range job {
		var b bytes.Buffer
		if err := ht.Execute(&b, e); err != nil {
			t.Fatal(err)
		}
		want[i] = b.String()
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b bytes.Buffer
			for k := 0; k < 200; k++ {
				i := (g*31 + k) % len(job)
				b.Reset()
				if err := ft.Execute(&b, job[i]); err != nil {
					t.Error(err)
					return
				}
				if b.String() != want[i] {
					t.Errorf("goroutine %d: recipient %d mismatch", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()
}

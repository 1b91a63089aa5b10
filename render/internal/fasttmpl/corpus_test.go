package fasttmpl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ---- corpus data model -------------------------------------------------------

type corpusItem struct {
	Name   string
	Price  int
	Sub    *corpusItem
	URL    string
	Img    string
	Note   string
	Rating float64
	Flag   bool
}

func (c corpusItem) Upper() string            { return strings.ToUpper(c.Name) }
func (c corpusItem) Greet(who string) string  { return "hi " + who + " from " + c.Name }
func (c *corpusItem) PtrMethod() string       { return "<ptr:" + c.Name + ">" }
func (c corpusItem) unexportedMethod() string { return "hidden" }
func (c corpusItem) String() string           { return "item(" + c.Name + ")" }
func (c corpusItem) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"name": c.Name, "price": c.Price})
}

var _ = corpusItem.unexportedMethod

type treeNode struct {
	Name     string
	Children []*treeNode
}

type stringerT struct{ V string }

func (s stringerT) String() string { return "S<" + s.V + ">" }

type namedStr string

type corpusData struct {
	S, T, URL, AttrName string
	N                   int
	F                   float64
	B                   bool
	U                   uint8
	F32                 float32
	I64                 int64
	Big, Small          float64

	Items, Empty []corpusItem
	PItems       []*corpusItem
	Item, NilPtr *corpusItem
	Val          corpusItem

	M    map[string]string
	MA   map[string]any
	Ints map[int]string
	Strs []string
	Any  any
	Anys []any

	HTML   template.HTML
	URLT   template.URL
	CSS    template.CSS
	JS     template.JS
	JSStr  template.JSStr
	Attr   template.HTMLAttr
	Srcset template.Srcset

	Ptr, NilStr  *string
	PInt, NilInt *int

	Str   stringerT
	Named namedStr
	Err   error `json:"-"`
	PStr  *stringerT

	Tree *treeNode
	Fn   func(string) string `json:"-"`
}

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

func strp(s string) *string { return &s }
func intp(i int) *int       { return &i }

// corpusVariant builds the i-th data set; successive variants rotate through
// the adversarial values independently per field.
func corpusVariant(i int) *corpusData {
	a := func(k int) string { return adversarial[(i*7+k)%len(adversarial)] }
	names := []string{"a", "b", "c", "d", "e"}
	items := make([]corpusItem, 0, 5)
	for k := 0; k < (i%4)+2; k++ {
		items = append(items, corpusItem{
			Name: names[k%len(names)], Price: numbers[(i+k)%len(numbers)],
			URL: urls[(i+k)%len(urls)], Img: a(k + 11), Note: a(k + 13),
			Rating: floats[(i+k)%len(floats)], Flag: k%2 == 0,
		})
	}
	if i%5 == 0 {
		items[0].Name = a(1)
	}
	sub := &corpusItem{Name: a(5)}
	if i%3 == 0 {
		sub.Sub = &corpusItem{Name: a(6)}
	}
	d := &corpusData{
		S: a(0), T: a(1), URL: urls[i%len(urls)], AttrName: a(2),
		N: numbers[i%len(numbers)], F: floats[i%len(floats)], B: i%2 == 0,
		U: uint8(i * 37), F32: float32(floats[(i+1)%len(floats)]), I64: int64(numbers[(i+2)%len(numbers)]) * 3,
		Big: 1e21 * float64(i+1), Small: 1e-5 / float64(i+1),
		Items: items, PItems: []*corpusItem{&items[0], {Name: a(3)}},
		Item: &corpusItem{Name: a(4), Price: i, Sub: sub, URL: urls[(i+3)%len(urls)]},
		Val:  corpusItem{Name: a(8)},
		M:    map[string]string{"a": a(9), "b": a(10), "z": "zz"},
		MA: map[string]any{"x": a(11), "n": i, "f": 1.5, "nested": map[string]any{"y": a(12)},
			"list": []any{1, "two", nil}, "nil": nil},
		Ints:   map[int]string{3: "three", 1: a(14), -2: "neg"},
		Strs:   []string{a(15), a(16), "three"},
		Anys:   []any{1, "s", 2.5, nil, true, a(17), &corpusItem{Name: "p"}, []int{1, 2}, map[string]int{"k": 1}, template.HTML("<b>h</b>")},
		HTML:   template.HTML([]string{"<b>bold</b> &amp; <i>it</i>", `<a href="x" title='y'>t</a> <script>alert(1)</script>`, "plain & <br>", "I <3 ponies", ""}[i%5]),
		URLT:   template.URL([]string{"javascript:ok()", "https://x.example/a b", "", "a,b 1x"}[i%4]),
		CSS:    template.CSS([]string{"color: red", "expression(x)", ""}[i%3]),
		JS:     template.JS([]string{"alert(1)", "x + y", ""}[i%3]),
		JSStr:  template.JSStr([]string{`it\'s`, `a"b`, "</script>"}[i%3]),
		Attr:   template.HTMLAttr([]string{`dir="ltr"`, `onclick="x()"`, ""}[i%3]),
		Srcset: template.Srcset([]string{"a.png 1x, b.png 2x", "javascript:x 1x", ""}[i%3]),
		Ptr:    strp(a(18)), PInt: intp(numbers[(i+4)%len(numbers)]),
		Str: stringerT{a(19)}, Named: namedStr(a(20)), PStr: &stringerT{a(21)},
		Tree: &treeNode{Name: a(22), Children: []*treeNode{{Name: "c1"}, {Name: a(23), Children: []*treeNode{{Name: "gc"}}}}},
		Fn:   strings.ToUpper,
	}
	switch i % 4 {
	case 0:
		d.Any = a(24)
	case 1:
		d.Any = d.Item
	case 2:
		d.Any = 3.5
	}
	if i%2 == 1 {
		d.Err = errors.New("bad <thing>")
	}
	if i%6 == 5 {
		d.Items = nil
		d.Item = nil
		d.Ptr = nil
	}
	return d
}

var corpusFuncs = template.FuncMap{
	"upper":    strings.ToUpper,
	"add":      func(a, b int) int { return a + b },
	"join":     strings.Join,
	"safe":     func(s string) template.HTML { return template.HTML(s) },
	"safeURL":  func(s string) template.URL { return template.URL(s) },
	"variadic": func(s ...string) string { return strings.Join(s, "+") },
	"anyf":     func(a any) string { return fmt.Sprintf("%T:%v", a, a) },
	"fail":     func(s string) (string, error) { return "", errors.New("fail: " + s) },
	"boom":     func() string { panic("boom") },
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

// toGeneric round-trips data through JSON so the same content can be
// rendered from map[string]any, exercising the dynamic evaluation paths.
func toGeneric(t testing.TB, d *corpusData) map[string]any {
	// JSON has no infinities or NaN.
	finite := func(f float64) float64 {
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return -1
		}
		return f
	}
	c := *d
	c.F, c.F32 = finite(c.F), float32(finite(float64(c.F32)))
	c.Items = append([]corpusItem(nil), c.Items...)
	for i := range c.Items {
		c.Items[i].Rating = finite(c.Items[i].Rating)
	}
	b, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// renderBoth renders data with html/template and fasttmpl and reports a
// difference in output or in failure.
func renderBoth(ht *template.Template, ft *Template, data any) (diff string) {
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

// dataSet is a data type and the values of that type to render.
type dataSet struct {
	typ    reflect.Type
	values []any
}

// corpusDataSets returns the data every corpus template is rendered with:
// the same content as a pointer to struct, a struct value (exercising the
// paths for non-addressable data) and map[string]any (dynamic lookups).
func corpusDataSets(t testing.TB) []dataSet {
	const variants = 48
	sets := []dataSet{{typ: reflect.TypeFor[*corpusData]()}, {typ: reflect.TypeFor[corpusData]()}, {typ: reflect.TypeFor[map[string]any]()}}
	for i := 0; i < variants; i++ {
		d := corpusVariant(i)
		sets[0].values = append(sets[0].values, d)
		sets[1].values = append(sets[1].values, *d)
		sets[2].values = append(sets[2].values, toGeneric(t, d))
	}
	return sets
}

// referenceDataSets is the reference workload's data in the same three forms.
func referenceDataSets(t testing.TB) []dataSet {
	_, base, generic := loadReference(t)
	sets := []dataSet{{typ: reflect.TypeOf(base)}, {typ: reflect.TypeOf(*base)}, {typ: reflect.TypeOf(generic), values: []any{generic}}}
	for _, e := range append(buildJob(base, 50, 40), base) {
		sets[0].values = append(sets[0].values, e)
		sets[1].values = append(sets[1].values, *e)
	}
	return sets
}

func TestCorpusDifferential(t *testing.T) {
	corpus := loadCorpus(t)
	corpusSets, refSets := corpusDataSets(t), referenceDataSets(t)
	for _, ct := range corpus {
		t.Run(ct.name, func(t *testing.T) {
			ht, err := template.New(ct.name).Funcs(corpusFuncs).Parse(ct.src)
			if err != nil {
				t.Fatal(err)
			}
			sets := corpusSets
			if ct.name == "44_reference" {
				sets = refSets
			}
			for _, set := range sets {
				ft, err := Compile(ct.name, ct.src, corpusFuncs, set.typ)
				if err != nil {
					t.Fatalf("Compile(%v): %v", set.typ, err)
				}
				if _, ok := expectedFallback[ct.name]; ok {
					if ft.Fast() {
						t.Errorf("%v: expected fallback to html/template", set.typ)
					}
				} else if !ft.Fast() {
					t.Errorf("%v: unexpected fallback: %s", set.typ, ft.FallbackReason())
				}
				for i, v := range set.values {
					if diff := renderBoth(ht, ft, v); diff != "" {
						t.Errorf("%v variant %d: %s", set.typ, i, diff)
					}
				}
				// The pointer and struct forms of the same data,
				// each of the type the other was compiled for, run
				// on the fallback (budgeted html/template).
				for i, v := range otherForm(sets, set) {
					if diff := renderBoth(ht, ft, v); diff != "" {
						t.Errorf("%v on the fallback, variant %d: %s", set.typ, i, diff)
					}
				}
			}
		})
	}
}

// otherForm returns the values of the pointer set for the struct set and
// the other way round; none for the others.
func otherForm(sets []dataSet, set dataSet) []any {
	switch set.typ {
	case sets[0].typ:
		return sets[1].values
	case sets[1].typ:
		return sets[0].values
	}
	return nil
}

// TestReferenceDifferential renders the reference template for a whole job
// of recipients and compares every email.
func TestReferenceDifferential(t *testing.T) {
	src, base, generic := loadReference(t)
	ht := template.Must(template.New("ref").Parse(src))
	ft, err := Compile("ref", src, nil, reflect.TypeOf(base))
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
	if err := ht.Execute(&want, generic); err != nil {
		t.Fatal(err)
	}
	if want.Len() != 12092 {
		t.Errorf("reference output is %d bytes, README says 12,092", want.Len())
	}
	gt, err := Compile("ref", src, nil, reflect.TypeOf(generic))
	if err != nil {
		t.Fatal(err)
	}
	if diff := renderBoth(ht, gt, generic); diff != "" {
		t.Fatal(diff)
	}
}

// TestConcurrentExecute renders from many goroutines at once (run with
// -race) to check that pooled render state is not shared.
func TestConcurrentExecute(t *testing.T) {
	src, base, _ := loadReference(t)
	job := buildJob(base, 50, 64)
	ht := template.Must(template.New("ref").Parse(src))
	ft, err := Compile("ref", src, nil, reflect.TypeOf(base))
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

package tmplbudget_test

import (
	"errors"
	"fmt"
	htmltemplate "html/template"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/shared/tmplbudget"
)

func TestMeterSteps(t *testing.T) {
	tests := []struct {
		name string
		lim  tmplbudget.Limits
		want []error // of each Step in turn
	}{
		{"no limits", tmplbudget.Limits{}, []error{nil, nil, nil}},
		{"three steps", tmplbudget.Limits{Steps: 3}, []error{nil, nil, nil, tmplbudget.ErrSteps, tmplbudget.ErrSteps}},
		{"a deadline in the future", tmplbudget.Limits{Deadline: time.Now().Add(time.Hour)}, make([]error, 2*tmplbudget.ClockEvery)},
		{"a deadline passed, seen at a look at the clock", tmplbudget.Limits{Deadline: time.Now().Add(-time.Second)},
			append(make([]error, tmplbudget.ClockEvery-1), tmplbudget.ErrTime)},
		{"steps run out before the clock is read", tmplbudget.Limits{Steps: 2, Deadline: time.Now().Add(-time.Second)},
			[]error{nil, nil, tmplbudget.ErrSteps}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m tmplbudget.Meter
			m.Start(tc.lim)
			var got []error
			for range tc.want {
				got = append(got, m.Step())
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) || errors.Is(b, a) })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestPrintfRefusedBeforeFormatting checks that printf calls that would
// build a string over the budget are refused without formatting them.
func TestPrintfRefusedBeforeFormatting(t *testing.T) {
	big := strings.Repeat("x", 600)
	tests := []struct {
		format string
		args   []any
		refuse bool
	}{
		{"%0999999d", []any{1}, true},
		{"%-999999s", []any{"a"}, true},
		{"%*d", []any{999999, 1}, true},
		{"%[2]*[1]d", []any{1, 999999}, true},
		{"%.999999f", []any{1.0}, true},
		{"%.*f", []any{999999, 1.0}, true},
		{"%[1]s%[1]s", []any{big}, true},
		{"%v %v", []any{[]string{big}, map[string]string{"k": big}}, true},
		{"%s", []any{&struct{ A, B string }{big, big}}, true},
		{"%999d", []any{1}, false},
		{"%s", []any{big}, false},
		{"%*d", []any{-999, 1}, false},
		{"%99999999d", []any{1}, false}, // fmt refuses the width and prints the error
	}
	for _, tc := range tests {
		var m tmplbudget.Meter
		m.Start(tmplbudget.Limits{Bytes: 1000})
		if err := m.Printf(tc.format, tc.args); (err != nil) != tc.refuse || err != nil && !errors.Is(err, tmplbudget.ErrBytes) {
			t.Errorf("Printf(%q): %v, want refused %v", tc.format, err, tc.refuse)
		}
	}
}

// TestBuiltinChecksNeverRefuseWhatFits formats many calls and requires
// that a budget of exactly the result's length lets them through: the
// checks count a lower bound of what fmt prints.
func TestBuiltinChecksNeverRefuseWhatFits(t *testing.T) {
	type card struct {
		Title string
		Tags  []string
		Price float64
		Next  *card
	}
	s := "héllo <wörld>"
	c := &card{Title: s, Tags: []string{s, "b"}, Price: 9.5, Next: &card{Title: s}}
	args := [][]any{
		{s}, {1}, {-3.25}, {true}, {nil}, {c}, {*c}, {[]byte(s)}, {[]any{s, 1, nil}}, {map[string]int{s: 1}},
		{errors.New(s)}, {htmltemplate.HTML(s)}, {time.Second}, {s, 5}, {5, s}, {3, 2, 1.5},
	}
	formats := []string{
		"%v", "%s", "%d", "%q", "%x", "% x", "%#v", "%+v", "%T", "%5s", "%-8v|", "%.2s", "%.1f", "%*d", "%.*f", "%[2]v%[1]v",
		"%[3]*.[2]*[1]f", "%!", "%", "%%", "%z", "%[9]d", "%[x]d", "%[1]s", "no verbs", "%s %s %s",
	}
	// And formats made of random pieces of format syntax.
	r := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"%", "%", "[", "]", "*", ".", "1", "2", "9", "0", "#", "-", "+", " ", "s", "d", "v", "f", "e", "x", "q", "T", "%%", "ab"}
	for range 3000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		formats = append(formats, b.String())
	}
	for _, f := range formats {
		for _, a := range args {
			out := fmt.Sprintf(f, a...)
			var m tmplbudget.Meter
			m.Start(tmplbudget.Limits{Bytes: max(len(out), 1)})
			if err := m.Printf(f, a); err != nil {
				t.Errorf("Printf(%q, %v) refused though it prints %d bytes: %v", f, a, len(out), err)
			}
			out = fmt.Sprint(a...)
			m.Start(tmplbudget.Limits{Bytes: max(len(out), 1)})
			if err := m.Args(a); err != nil {
				t.Errorf("Args(%v) refused though print makes %d bytes: %v", a, len(out), err)
			}
		}
	}
}

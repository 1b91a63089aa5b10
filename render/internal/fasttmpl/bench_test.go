package fasttmpl

import (
	"bytes"
	"html/template"
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRender renders the reference email for a job of 1,000 recipients
// sharing a pool of 50 products, cycling through the recipients so that no
// two consecutive renders see the same Customer/Recipient data. Both
// engines run in the same invocation so their ratio can be read directly.
// cpu-ns/op is the process's CPU time per render (garbage collection
// included), steadier than wall time on a shared machine.
func BenchmarkRender(b *testing.B) {
	src, base := loadReference(b)
	job := buildJob(base, 50, 1000)

	b.Run("html_template", func(b *testing.B) {
		t := template.Must(template.New("ref").Parse(src))
		var buf bytes.Buffer
		b.ReportAllocs()
		b.ResetTimer()
		cpu := processCPU()
		for i := 0; i < b.N; i++ {
			buf.Reset()
			if err := t.Execute(&buf, job[i%len(job)]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
		b.SetBytes(int64(buf.Len()))
	})

	b.Run("fasttmpl", func(b *testing.B) {
		t, err := Compile("ref", src)
		if err != nil {
			b.Fatal(err)
		}
		if !t.Fast() {
			b.Fatalf("reference template fell back: %s", t.FallbackReason())
		}
		var buf bytes.Buffer
		b.ReportAllocs()
		b.ResetTimer()
		cpu := processCPU()
		for i := 0; i < b.N; i++ {
			buf.Reset()
			if err := t.Execute(&buf, job[i%len(job)]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
		b.SetBytes(int64(buf.Len()))
	})
}

// BenchmarkEscapers measures the hot escapers on typical email values.
func BenchmarkEscapers(b *testing.B) {
	url := "https://cdn.acme-outfitters.example/images/products/SKU-31337-00/main_520x520.jpg?v=3"
	text := "Because you viewed Trail Running Shoes & Outdoor Layers"
	cases := []struct {
		name string
		in   string
		f    escFunc
	}{
		{"url_filter_norm_attr", url, escURLFilterNormAttr},
		{"url_query_attr", "cmp_2026_bf_0042", escURLQueryAttr},
		{"html", text, escHTML},
		{"attr", text, escAttr},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 256)
			b.SetBytes(int64(len(c.in)))
			for i := 0; i < b.N; i++ {
				buf = c.f(buf[:0], c.in)
			}
		})
	}
}

//go:build linux

package fasttmpl

import (
	"bytes"
	"html/template"
	"os"
	"reflect"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// threadCPU returns the CPU time consumed by the calling OS thread.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestCPUTimePerRender reports the CPU time per render of both engines on
// the reference workload, measured on a locked thread. On a shared, noisy
// machine this is steadier than the wall time benchmarks report. It only
// runs when FASTTMPL_CPUTIME is set:
//
//	FASTTMPL_CPUTIME=1 go test -run CPUTime -v ./render/internal/fasttmpl/
func TestCPUTimePerRender(t *testing.T) {
	if os.Getenv("FASTTMPL_CPUTIME") == "" {
		t.Skip("set FASTTMPL_CPUTIME=1 to measure")
	}
	src, base, _ := loadReference(t)
	job := buildJob(base, 50, 1000)
	ft, err := Compile("ref", src, nil, reflect.TypeOf(base))
	if err != nil {
		t.Fatal(err)
	}
	ht := template.Must(template.New("ref").Parse(src))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var buf bytes.Buffer
	measure := func(n int, render func(i int)) time.Duration {
		for i := 0; i < n/10; i++ {
			render(i)
		}
		start := threadCPU()
		for i := 0; i < n; i++ {
			render(i)
		}
		return (threadCPU() - start) / time.Duration(n)
	}
	for round := 0; round < 3; round++ {
		f := measure(200000, func(i int) { buf.Reset(); _ = ft.Execute(&buf, job[i%len(job)]) })
		h := measure(5000, func(i int) { buf.Reset(); _ = ht.Execute(&buf, job[i%len(job)]) })
		t.Logf("CPU per render: fasttmpl %v, html/template %v, ratio %.1fx", f, h, float64(h)/float64(f))
	}
}

package espout_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/devtools/childserver"
	"herald/devtools/espcatch"
	"herald/dispatch/internal/espout"
	"herald/dispatch/internal/provider"
)

// BenchmarkSend sends 8 KiB messages in batches of 100 to an espcatch in a
// child process, so that client-cpu-µs/msg is this client's cost alone:
// encoding, HTTP and decoding the results.
//
//	go test -run '^$' -bench Send -benchtime 50000x ./dispatch/internal/espout
func BenchmarkSend(b *testing.B) {
	srv := startChild(b)
	c, err := espout.New(espout.Config{BaseURL: srv.url, Batch: 100})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("From: Shop <news@shop.example>\r\nSubject: hi\r\n\r\n" + strings.Repeat("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusm\r\n", 8<<10/70))
	msgs := make([]*provider.Message, 400)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	before := srv.stats(b)
	cpuBefore := cpuTime(b)
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += len(msgs) {
		n := min(len(msgs), b.N-sent)
		for i := range n {
			id := strconv.Itoa(sent + i)
			msgs[i] = &provider.Message{Key: "t/j/email/" + id, MessageID: id + "@herald.test", From: "b@shop.example", To: "u" + id + "@example.com", Body: body}
		}
		for i, r := range c.Send(context.Background(), msgs[:n]) {
			if r.Outcome != provider.Sent {
				b.Fatalf("message %d: %+v", i, r)
			}
		}
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpuBefore
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "client-cpu-µs/msg")
	if got := srv.stats(b).Messages - before.Messages; got != int64(b.N) {
		b.Errorf("the provider accepted %d messages, want %d", got, b.N)
	}
}

// childEnv makes the test binary run an ESP catcher instead of its tests,
// so that the benchmark's CPU figures are the client's alone.
const childEnv = "ESPOUT_BENCH_SERVER"

func TestMain(m *testing.M) {
	if childserver.Serving(childEnv) {
		os.Exit(childserver.Serve(func() (string, func() any, func(), error) {
			s, err := espcatch.Start(context.Background(), espcatch.Options{})
			if err != nil {
				return "", nil, nil, err
			}
			return s.URL(), func() any { return s.Stats() }, func() { s.Close() }, nil
		}))
	}
	os.Exit(m.Run())
}

// child is an ESP catcher in a child process.
type child struct {
	*childserver.Child
	url string
}

func startChild(b *testing.B) *child {
	c := childserver.Start(b, childEnv)
	return &child{Child: c, url: c.Addr}
}

func (c *child) stats(b *testing.B) espcatch.Stats {
	var st espcatch.Stats
	c.Usage(b, &st)
	return st
}

func cpuTime(*testing.B) time.Duration { return childserver.CPU() }

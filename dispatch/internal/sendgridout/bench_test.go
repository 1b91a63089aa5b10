package sendgridout_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"herald/devtools/childserver"
	"herald/devtools/sendgridcatch"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/sendgridout"
)

// BenchmarkSend sends render's message (testdata/rendered.eml), 400 per
// Send, to a sendgridcatch in a child process, so that client-cpu-µs/msg is
// this client's cost alone: taking the MIME apart, building the JSON, HTTP.
//
//	go test -run '^$' -bench Send -benchtime 20000x ./dispatch/internal/sendgridout
func BenchmarkSend(b *testing.B) {
	srv := childserver.Start(b, childEnv)
	c, err := sendgridout.New(sendgridout.Config{BaseURL: srv.Addr, APIKey: apiKey})
	if err != nil {
		b.Fatal(err)
	}
	body := rendered(b)
	msgs := make([]*provider.Message, 400)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var before sendgridcatch.Stats
	srv.Usage(b, &before)
	cpuBefore := childserver.CPU()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += len(msgs) {
		n := min(len(msgs), b.N-sent)
		for i := range n {
			id := strconv.Itoa(sent + i)
			msgs[i] = &provider.Message{Key: "t/j/email/" + id, MessageID: id + "@herald.test", From: "news@shop.example",
				To: "u" + id + "@example.com", Body: body, Tenant: "t", JobID: "j", CustomerID: id}
		}
		for i, r := range c.Send(context.Background(), msgs[:n]) {
			if r.Outcome != provider.Sent {
				b.Fatalf("message %d: %+v", i, r)
			}
		}
	}
	b.StopTimer()
	cpu := childserver.CPU() - cpuBefore
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "client-cpu-µs/msg")
	var after sendgridcatch.Stats
	srv.Usage(b, &after)
	if got := after.Messages - before.Messages; got != int64(b.N) {
		b.Errorf("SendGrid accepted %d messages, want %d", got, b.N)
	}
}

// childEnv makes the test binary run a Mail Send endpoint instead of its
// tests, so that the benchmark's CPU figures are the client's alone.
const childEnv = "SENDGRIDOUT_BENCH_SERVER"

func TestMain(m *testing.M) {
	if childserver.Serving(childEnv) {
		os.Exit(childserver.Serve(func() (string, func() any, func(), error) {
			s, err := sendgridcatch.Start(context.Background(), sendgridcatch.Options{APIKey: apiKey})
			if err != nil {
				return "", nil, nil, err
			}
			return s.URL(), func() any { return s.Stats() }, func() { s.Close() }, nil
		}))
	}
	os.Exit(m.Run())
}

package sesout_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"herald/devtools/childserver"
	"herald/devtools/sescatch"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/sesout"
)

// BenchmarkSend sends 8 KiB messages, 400 per Send, to a sescatch in a
// child process, so that client-cpu-µs/msg is this client's cost alone:
// the SDK's serialization, SigV4 signing, HTTP and decoding the answer.
//
//	go test -run '^$' -bench Send -benchtime 20000x ./dispatch/internal/sesout
func BenchmarkSend(b *testing.B) {
	srv := childserver.Start(b, childEnv)
	c, err := sesout.New(sesout.Config{Region: "us-east-1", Endpoint: srv.Addr, AccessKeyID: keyID, SecretAccessKey: secret, ConfigurationSet: "herald"})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("From: Shop <news@shop.example>\r\nSubject: hi\r\n\r\n" + strings.Repeat("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusm\r\n", 8<<10/70))
	msgs := make([]*provider.Message, 400)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var before sescatch.Stats
	srv.Usage(b, &before)
	cpuBefore := childserver.CPU()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += len(msgs) {
		n := min(len(msgs), b.N-sent)
		for i := range n {
			id := strconv.Itoa(sent + i)
			msgs[i] = &provider.Message{Key: "t/" + jobID + "/email/" + id, MessageID: id + "@herald.test", From: "news@shop.example",
				To: "u" + id + "@example.com", Body: body, Tenant: "t", JobID: jobID, CustomerID: id}
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
	var after sescatch.Stats
	srv.Usage(b, &after)
	if got := after.Messages - before.Messages; got != int64(b.N) {
		b.Errorf("SES accepted %d messages, want %d", got, b.N)
	}
}

// childEnv makes the test binary run an SES endpoint instead of its tests,
// so that the benchmark's CPU figures are the client's alone.
const childEnv = "SESOUT_BENCH_SERVER"

func TestMain(m *testing.M) {
	if childserver.Serving(childEnv) {
		os.Exit(childserver.Serve(func() (string, func() any, func(), error) {
			s, err := sescatch.Start(context.Background(), sescatch.Options{AccessKeyID: keyID, SecretAccessKey: secret})
			if err != nil {
				return "", nil, nil, err
			}
			return s.URL(), func() any { return s.Stats() }, func() { s.Close() }, nil
		}))
	}
	os.Exit(m.Run())
}

package smtpout_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"herald/devtools/childserver"
	"herald/devtools/mailcatch"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/smtpout"
)

// BenchmarkPool measures sending through Pool to a sink-mode mail catcher
// in a child process, against go-smtp's client (one command per round
// trip) on as many connections. client-cpu-µs/msg is this process's CPU
// per message, the figure that counts against dispatch's budget; the
// catcher's own CPU is reported apart.
//
//	go test -run '^$' -bench Pool -benchtime 100000x ./dispatch/internal/smtpout
func BenchmarkPool(b *testing.B) {
	const conns = 16
	for _, size := range []int{1 << 10, 8 << 10} {
		b.Run(fmt.Sprintf("client=herald-batch/size=%dKiB", size>>10), func(b *testing.B) {
			srv := startSink(b)
			pool := smtpout.NewPool(smtpout.Config{Addr: srv.addr, HeloName: "bench.test", Conns: conns, Timeout: 10 * time.Second, TLSMode: smtpout.NoTLS})
			defer pool.Close()
			// Batches of 100, as dispatch sends a claimed chunk.
			batch := make([]*provider.Message, 100)
			for i := range batch {
				batch[i] = &provider.Message{From: "noreply@herald.test", To: "user" + strconv.Itoa(i) + "@example.com", Body: benchMessage(0, size)}
			}
			var seq int64
			runBatches(b, srv, size, func(n int) error {
				for _, m := range batch[:n] {
					seq++
					setID(m.Body, seq)
				}
				for i, res := range pool.Send(context.Background(), batch[:n]) {
					if res.Outcome != provider.Sent {
						return fmt.Errorf("message %d: %v: %s", i, res.Outcome, res.Reason)
					}
				}
				return nil
			})
		})
		b.Run(fmt.Sprintf("client=herald-one/size=%dKiB", size>>10), func(b *testing.B) {
			srv := startSink(b)
			pool := smtpout.NewPool(smtpout.Config{Addr: srv.addr, HeloName: "bench.test", Conns: conns, Timeout: 10 * time.Second, TLSMode: smtpout.NoTLS})
			defer pool.Close()
			runSink(b, srv, size, conns, func() func(to string, msg []byte) error {
				return func(to string, msg []byte) error {
					if res := pool.SendOne(context.Background(), "noreply@herald.test", to, msg); res.Outcome != provider.Sent {
						return fmt.Errorf("%v: %s", res.Outcome, res.Reason)
					}
					return nil
				}
			})
		})
		b.Run(fmt.Sprintf("client=go-smtp/size=%dKiB", size>>10), func(b *testing.B) {
			srv := startSink(b)
			runSink(b, srv, size, conns, func() func(to string, msg []byte) error {
				c, err := smtp.Dial(srv.addr)
				if err == nil {
					err = c.Hello("bench.test")
				}
				if err != nil {
					return func(string, []byte) error { return err }
				}
				return func(to string, msg []byte) error {
					if err := c.Mail("noreply@herald.test", nil); err != nil {
						return err
					}
					if err := c.Rcpt(to, nil); err != nil {
						return err
					}
					w, err := c.Data()
					if err != nil {
						return err
					}
					if _, err := w.Write(msg); err != nil {
						return err
					}
					return w.Close()
				}
			})
		})
	}
}

// runBatches sends b.N messages in batches of up to 100 with send, and
// reports throughput and CPU.
func runBatches(b *testing.B, srv *sink, size int, send func(n int) error) {
	b.SetBytes(int64(len(benchMessage(0, size))))
	b.ReportAllocs()
	before := srv.usage(b)
	clientBefore := cpuTime(b)
	b.ResetTimer()
	for left := b.N; left > 0; left -= 100 {
		if err := send(min(left, 100)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	report(b, srv, before, cpuTime(b)-clientBefore)
}

// runSink sends b.N messages of about size bytes from conns goroutines,
// each with the sender newSender makes, and reports throughput and CPU.
func runSink(b *testing.B, srv *sink, size, conns int, newSender func() func(to string, msg []byte) error) {
	var seq atomic.Int64
	b.SetParallelism(max(1, conns/runtime.GOMAXPROCS(0)))
	b.SetBytes(int64(len(benchMessage(0, size))))
	b.ReportAllocs()
	before := srv.usage(b)
	clientBefore := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		send := newSender()
		msg := benchMessage(0, size)
		for pb.Next() {
			n := seq.Add(1)
			setID(msg, n)
			if err := send("user"+strconv.FormatInt(n%1000, 10)+"@example.com", msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	report(b, srv, before, cpuTime(b)-clientBefore)
}

func report(b *testing.B, srv *sink, before sinkUsage, clientCPU time.Duration) {
	after := srv.usage(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(clientCPU.Microseconds())/float64(b.N), "client-cpu-µs/msg")
	b.ReportMetric(float64((after.cpu-before.cpu).Microseconds())/float64(b.N), "server-cpu-µs/msg")
	if got := after.stats.DistinctMessageIDs - before.stats.DistinctMessageIDs; got != int64(b.N) {
		b.Errorf("server saw %d distinct Message-IDs, want %d", got, b.N)
	}
}

// benchMessage is a rendered-looking message of about size bytes whose
// Message-ID setID can overwrite in place.
func benchMessage(id int64, size int) []byte {
	var buf bytes.Buffer
	buf.WriteString("From: Herald <noreply@herald.test>\r\nTo: user@example.com\r\n")
	buf.WriteString("Subject: =?utf-8?q?Your_order_has_shipped?=\r\nDate: Fri, 27 Nov 2026 09:00:00 +0000\r\n")
	fmt.Fprintf(&buf, "Message-ID: <%016d@bench.herald>\r\n", id)
	buf.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	line := strings.Repeat("lorem ipsum ", 6) + "\r\n"
	for buf.Len() < size {
		buf.WriteString(line)
	}
	return buf.Bytes()
}

func setID(msg []byte, id int64) {
	i := bytes.Index(msg, []byte("Message-ID: <")) + len("Message-ID: <")
	digits := fmt.Appendf(nil, "%016d", id)
	copy(msg[i:], digits)
}

// sinkEnv makes the test binary run a sink-mode catcher instead of its
// tests, so that the benchmark's CPU figures are the client's alone.
const sinkEnv = "SMTPOUT_BENCH_SINK"

func TestMain(m *testing.M) {
	if childserver.Serving(sinkEnv) {
		os.Exit(childserver.Serve(func() (string, func() any, func(), error) {
			s, err := mailcatch.Start(context.Background(), mailcatch.Options{})
			if err != nil {
				return "", nil, nil, err
			}
			return s.SMTPAddr(), func() any { return s.Stats() }, func() { _ = s.Close() }, nil
		}))
	}
	os.Exit(m.Run())
}

// sink is a sink-mode catcher in a child process.
type sink struct {
	*childserver.Child
	addr string
}

type sinkUsage struct {
	cpu   time.Duration
	stats mailcatch.Stats
}

func startSink(b *testing.B) *sink {
	c := childserver.Start(b, sinkEnv)
	return &sink{Child: c, addr: c.Addr}
}

func (s *sink) usage(b *testing.B) sinkUsage {
	var u sinkUsage
	u.cpu = s.Usage(b, &u.stats)
	return u
}

func cpuTime(*testing.B) time.Duration { return childserver.CPU() }

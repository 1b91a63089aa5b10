package mailcatch

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"herald/devtools/childserver"

	"github.com/emersion/go-smtp"
)

// BenchmarkSink measures how many messages per second a catcher in sink mode
// accepts over loopback from 32 client connections, each sending messages of
// about 1 KiB or 8 KiB with distinct Message-IDs one after another. The
// server runs in a child process, as it would beside Herald, and shares the
// CPU with the clients; server-cpu-µs/msg is its cost alone, which bounds
// its throughput at (cores / cost) once the senders are elsewhere.
//
// client=go-smtp uses github.com/emersion/go-smtp's client, which waits for
// each reply before sending the next command: four round trips per message.
// client=pipelining sends MAIL, RCPT and DATA together (RFC 2920): two round
// trips per message.
//
//	go test -run '^$' -bench Sink -benchtime 200000x ./devtools/mailcatch
func BenchmarkSink(b *testing.B) {
	const conns = 32
	clients := []struct {
		name string
		dial func(addr string) (sender, error)
	}{
		{"go-smtp", dialGoSMTP},
		{"pipelining", dialPipelining},
	}
	for _, size := range []int{1 << 10, 8 << 10} {
		for _, cl := range clients {
			b.Run(fmt.Sprintf("client=%s/size=%dKiB", cl.name, size>>10), func(b *testing.B) {
				benchmarkSink(b, cl.dial, size, conns)
			})
		}
	}
}

// sender sends one message on an open connection.
type sender interface {
	send(from, to string, parts ...string) error
	close()
}

func benchmarkSink(b *testing.B, dial func(string) (sender, error), size, conns int) {
	srv := startBenchServer(b)
	head := "From: Herald <noreply@herald.test>\r\nTo: user@example.com\r\nSubject: =?UTF-8?Q?Your_order_has_shipped?=\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nMessage-ID: <"
	body := ">\r\n\r\n" + strings.Repeat(strings.Repeat("lorem ipsum ", 6)+"\r\n", size/74)
	var seq atomic.Int64

	b.SetParallelism(max(1, conns/runtime.GOMAXPROCS(0)))
	b.SetBytes(int64(len(head) + len(body) + 20))
	b.ReportAllocs()
	before := srv.usage(b)
	clientBefore := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := dial(srv.addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.close()
		for pb.Next() {
			n := seq.Add(1)
			id := strconv.FormatInt(n, 10) + "@bench.herald"
			to := "user" + strconv.FormatInt(n%1000, 10) + "@example.com"
			if err := c.send("noreply@herald.test", to, head, id, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	after := srv.usage(b)
	clientCPU := cpuTime(b) - clientBefore
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64((after.cpu-before.cpu).Microseconds())/float64(b.N), "server-cpu-µs/msg")
	b.ReportMetric(float64(clientCPU.Microseconds())/float64(b.N), "client-cpu-µs/msg")
	if got := after.stats.Messages - before.stats.Messages; got != int64(b.N) {
		b.Errorf("server accepted %d messages, want %d", got, b.N)
	}
	if got := after.stats.DistinctMessageIDs - before.stats.DistinctMessageIDs; got != int64(b.N) {
		b.Errorf("server saw %d distinct Message-IDs, want %d", got, b.N)
	}
}

// benchServerEnv makes the test binary run a sink-mode catcher instead of its
// tests, so that benchmarks measure the server's CPU apart from the clients'.
const benchServerEnv = "MAILCATCH_BENCH_SERVER"

func TestMain(m *testing.M) {
	if childserver.Serving(benchServerEnv) {
		os.Exit(childserver.Serve(func() (string, func() any, func(), error) {
			s, err := Start(context.Background(), Options{})
			if err != nil {
				return "", nil, nil, err
			}
			return s.SMTPAddr(), func() any { return s.Stats() }, func() { _ = s.Close() }, nil
		}))
	}
	os.Exit(m.Run())
}

// benchServer is a catcher running in a child process.
type benchServer struct {
	*childserver.Child
	addr string
}

type serverUsage struct {
	cpu   time.Duration
	stats Stats
}

func startBenchServer(b *testing.B) *benchServer {
	c := childserver.Start(b, benchServerEnv)
	return &benchServer{Child: c, addr: c.Addr}
}

func (s *benchServer) usage(b *testing.B) serverUsage {
	var u serverUsage
	u.cpu = s.Usage(b, &u.stats)
	return u
}

// goSMTPSender is go-smtp's client: one command per round trip.
type goSMTPSender struct{ c *smtp.Client }

func dialGoSMTP(addr string) (sender, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.Hello("bench.test"); err != nil {
		c.Close()
		return nil, err
	}
	return goSMTPSender{c}, nil
}

func (g goSMTPSender) send(from, to string, parts ...string) error {
	if err := g.c.Mail(from, nil); err != nil {
		return err
	}
	if err := g.c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := g.c.Data()
	if err != nil {
		return err
	}
	for _, part := range parts {
		if _, err := io.WriteString(w, part); err != nil {
			return err
		}
	}
	return w.Close()
}

func (g goSMTPSender) close() { _ = g.c.Quit() }

// pipeliningSender sends the envelope and DATA in one write, then the
// content. Its messages must have CRLF line ends and no line starting with
// a dot, which the benchmark's messages satisfy.
type pipeliningSender struct {
	conn net.Conn
	r    *textproto.Reader
	w    *bufio.Writer
}

func dialPipelining(addr string) (sender, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &pipeliningSender{conn: conn, r: textproto.NewReader(bufio.NewReader(conn)), w: bufio.NewWriterSize(conn, 16<<10)}
	if _, _, err := p.r.ReadResponse(220); err != nil {
		conn.Close()
		return nil, err
	}
	if _, msg, err := p.cmd(250, "EHLO bench.test\r\n"); err != nil || !strings.Contains(msg, "PIPELINING") {
		conn.Close()
		return nil, fmt.Errorf("ehlo: %q, %v", msg, err)
	}
	return p, nil
}

func (p *pipeliningSender) cmd(code int, line string) (int, string, error) {
	if _, err := p.w.WriteString(line); err != nil {
		return 0, "", err
	}
	if err := p.w.Flush(); err != nil {
		return 0, "", err
	}
	return p.r.ReadResponse(code)
}

func (p *pipeliningSender) send(from, to string, parts ...string) error {
	fmt.Fprintf(p.w, "MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n", from, to)
	if err := p.w.Flush(); err != nil {
		return err
	}
	for _, code := range []int{250, 250, 354} {
		if _, _, err := p.r.ReadResponse(code); err != nil {
			return err
		}
	}
	for _, part := range parts {
		p.w.WriteString(part)
	}
	_, _, err := p.cmd(250, ".\r\n")
	return err
}

func (p *pipeliningSender) close() {
	_, _, _ = p.cmd(221, "QUIT\r\n")
	p.conn.Close()
}

// cpuTime returns the CPU time, user and system, this process has used.
// CPU per message shows the cost even when other work shares the machine and
// skews messages per second.
func cpuTime(*testing.B) time.Duration { return childserver.CPU() }

package espout_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"herald/dispatch/internal/espout"
	"herald/dispatch/internal/provider"
	"herald/shared/espcatch"
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

const childEnv = "ESPOUT_BENCH_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		s, err := espcatch.Start(context.Background(), espcatch.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(s.URL())
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			st, _ := json.Marshal(s.Stats())
			fmt.Println(string(st))
		}
		s.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type child struct {
	url string
	in  io.WriteCloser
	out *bufio.Reader
}

func startChild(b *testing.B) *child {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
	})
	c := &child{in: in, out: bufio.NewReader(out)}
	line, err := c.out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	c.url = strings.TrimSpace(line)
	return c
}

func (c *child) stats(b *testing.B) espcatch.Stats {
	if _, err := io.WriteString(c.in, "stats\n"); err != nil {
		b.Fatal(err)
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	var st espcatch.Stats
	if err := json.Unmarshal([]byte(line), &st); err != nil {
		b.Fatal(err)
	}
	return st
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

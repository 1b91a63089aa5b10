// Package childserver runs a test server in a child process of a test
// binary, so that a benchmark measures its own process's CPU apart from the
// server's. The test binary runs itself again with an environment variable
// set; in the child, TestMain hands over to Serve instead of the tests.
// The two talk over the child's standard input and output: the child
// prints its address, then answers each line with its CPU time and its
// stats as JSON, and exits when its input closes.
package childserver

import (
	"bufio"
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
)

// Serving reports whether this process is the child named by env.
func Serving(env string) bool { return os.Getenv(env) == "1" }

// Serve starts the server with start, which returns its address, a
// function reporting its stats and one stopping it; then it answers until
// standard input closes. It returns the process's exit code.
func Serve(start func() (addr string, stats func() any, stop func(), err error)) int {
	addr, stats, stop, err := start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	fmt.Println(addr)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		st, err := json.Marshal(stats())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("%d %s\n", CPU(), st)
	}
	return 0
}

// CPU is this process's user and system CPU time so far.
func CPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Child is a server running in a child process.
type Child struct {
	// Addr is what the server printed: its address or URL.
	Addr string
	in   io.WriteCloser
	out  *bufio.Reader
}

// Start runs the test binary again as the child named by env and waits for
// its address; the child stops when tb's test ends.
func Start(tb testing.TB, env string) *Child {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			tb.Errorf("child server: %v", err)
		}
	})
	c := &Child{in: in, out: bufio.NewReader(out)}
	line, err := c.out.ReadString('\n')
	if err != nil {
		tb.Fatalf("read the child server's address: %v", err)
	}
	c.Addr = strings.TrimSpace(line)
	return c
}

// Usage asks the child for its CPU time so far and decodes its stats into
// stats.
func (c *Child) Usage(tb testing.TB, stats any) time.Duration {
	tb.Helper()
	if _, err := io.WriteString(c.in, "usage\n"); err != nil {
		tb.Fatal(err)
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		tb.Fatal(err)
	}
	cpu, st, ok := strings.Cut(strings.TrimSpace(line), " ")
	ns, perr := strconv.ParseInt(cpu, 10, 64)
	if !ok || perr != nil || json.Unmarshal([]byte(st), stats) != nil {
		tb.Fatalf("the child server said %q", line)
	}
	return time.Duration(ns)
}

// Package devpubsub runs a throwaway Google Cloud Pub/Sub server for demos,
// tests and benchmarks: Google's Java emulator when the gcloud CLI is
// installed, or else the in-process fake from cloud.google.com/go/pubsub/v2/pstest.
//
// The emulator is Google's own stand-in for the service and the closer match
// to production behaviour, so it is preferred; the fake needs nothing
// installed and starts instantly, but implements less.
//
// Clients reach either one at Host without TLS or credentials; ClientOptions
// returns the options for that. The package itself never reads or sets
// PUBSUB_EMULATOR_HOST.
//
// Cleanup when the caller dies: the emulator is a gcloud (Python) process
// that starts a Java process, and killing gcloud alone leaves Java running.
// gcloud also moves itself into a process group of its own, so the emulator
// is started in a new session instead, under a small shell that holds a pipe
// from the caller as its standard input. When that pipe closes, because Stop
// closed it or because the caller died (even by SIGKILL), the shell sends
// SIGTERM to gcloud's process group, Java included. Stop itself signals every
// process of the session. The temporary directory is left behind when the
// caller dies without calling Stop.
package devpubsub

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Kinds of server, as returned by Server.Kind.
const (
	KindEmulator = "emulator"
	KindFake     = "pstest"
)

// startTimeout bounds how long Start waits for the emulator to serve when
// the caller's context has no earlier deadline.
const startTimeout = 60 * time.Second

// termGrace is how long Stop waits after SIGTERM before it sends SIGKILL,
// and again after SIGKILL before it gives up.
const termGrace = 5 * time.Second

// portAttempts is how many free ports Start tries before giving up, since
// another process can take a port between the moment it is picked and the
// moment the emulator binds it.
const portAttempts = 5

// readyProject is the project named in the readiness probe; the emulator
// accepts any project and creates nothing for a list call.
const readyProject = "projects/devpubsub-ready"

// watchdog is the shell script the emulator runs under. It starts the
// command given as its arguments in the background (with standard input from
// /dev/null, as POSIX specifies for asynchronous lists without job control),
// gives its own output descriptors away so that the caller sees end of file
// on the output pipe once gcloud is gone, then waits for its standard input,
// a pipe from the caller, to close. Then it terminates gcloud's process
// group, which gcloud creates for itself and its Java child with
// setpgid(0, 0), and gcloud itself in case it has not got that far.
const watchdog = `"$@" &
pid=$!
exec >/dev/null 2>&1
read -r _
kill -s TERM -- "-$pid"
kill -s TERM "$pid"
`

// Options configures Start.
type Options struct {
	// Dir is the parent of the emulator's temporary directory. Empty means
	// the system temporary directory. The fake uses no directory.
	Dir string
	// Log receives progress messages, and the emulator's output at debug
	// level. Nil discards them.
	Log *slog.Logger
	// Fake selects pstest even when gcloud is installed.
	Fake bool
	// RequireEmulator makes Start fail when gcloud is not on PATH instead of
	// falling back to pstest.
	RequireEmulator bool
	// Port is the loopback port to serve on; 0 picks a free one. A server
	// started on the port of one that was stopped is where that one's
	// clients look: a broker that restarted, empty.
	Port int
}

// Server is a running Pub/Sub emulator or fake.
type Server struct {
	kind string
	host string
	log  *slog.Logger

	// The emulator's process and files; unset for the fake.
	dir     string
	logPath string
	cmd     *exec.Cmd
	stdin   *os.File      // write end of the watchdog's standard input
	exited  chan struct{} // closed once the watchdog shell has been reaped
	outDone chan struct{} // closed at end of the output pipe, once gcloud has exited

	fake *pstest.Server

	stopOnce sync.Once
	stopErr  error
}

// Start starts a server and returns once it answers gRPC calls. The caller
// must call Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "devpubsub")
	if opts.Fake && opts.RequireEmulator {
		return nil, errors.New("start pubsub: Fake and RequireEmulator contradict each other")
	}
	if opts.Fake {
		return startFake(log, opts.Port)
	}
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		if opts.RequireEmulator {
			return nil, fmt.Errorf("start pubsub emulator: find gcloud on PATH: %w", err)
		}
		log.Info("gcloud not found, using the pstest fake")
		return startFake(log, opts.Port)
	}
	s, err := startEmulator(ctx, gcloud, opts.Dir, opts.Port, log)
	if err != nil {
		return nil, fmt.Errorf("start pubsub emulator: %w", err)
	}
	return s, nil
}

// startFake serves pstest on the loopback port, or on a free one chosen by
// the kernel when port is 0.
func startFake(log *slog.Logger, port int) (s *Server, err error) {
	// pstest panics when it cannot listen; report that as an error.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("start pstest: %v", r)
		}
	}()
	fake := pstest.NewServerWithAddress(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	log.Info("pstest ready", "host", fake.Addr)
	return &Server{kind: KindFake, host: fake.Addr, log: log, fake: fake}, nil
}

// startEmulator runs the gcloud emulator in a new temporary directory, on
// port or, when port is 0, on a free one.
func startEmulator(ctx context.Context, gcloud, parent string, port int, log *slog.Logger) (*Server, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	dir, err := os.MkdirTemp(parent, "devpubsub-")
	if err != nil {
		return nil, fmt.Errorf("create dir: %w", err)
	}
	s := &Server{kind: KindEmulator, dir: dir, logPath: filepath.Join(dir, "emulator.log"), log: log.With("dir", dir)}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("create data dir: %w", err)
	}

	began := time.Now()
	for attempt := 1; ; attempt++ {
		at := port
		var err error
		if at == 0 {
			at, err = freePort()
		}
		if err == nil {
			err = s.launch(ctx, gcloud, at)
		}
		if err == nil {
			s.log.Info("pubsub emulator ready", "host", s.host, "took", time.Since(began).Round(time.Millisecond))
			return s, nil
		}
		if !errors.Is(err, errPortTaken) || attempt >= portAttempts {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s.log.Debug("emulator port taken, retrying", "port", at)
	}
}

// errPortTaken reports that the emulator could not bind its port.
var errPortTaken = errors.New("port already in use")

// launch starts the emulator on port and waits until it serves. On failure
// it leaves no process behind and returns the log tail in the error,
// wrapping errPortTaken when the port was taken meanwhile.
func (s *Server) launch(ctx context.Context, gcloud string, port int) error {
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logFile, err := os.Create(s.logPath) // each attempt starts a fresh log
	if err != nil {
		return fmt.Errorf("create log: %w", err)
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return fmt.Errorf("create pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		logFile.Close()
		stdinR.Close()
		stdinW.Close()
		return fmt.Errorf("create pipe: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", watchdog, "devpubsub-watchdog",
		gcloud, "beta", "emulators", "pubsub", "start",
		"--host-port="+host,
		"--data-dir="+filepath.Join(s.dir, "data"),
	)
	cmd.Dir = s.dir
	// Never wait for an answer to a prompt (such as an offer to install a
	// missing component) and skip the update check, which needs the network.
	cmd.Env = append(os.Environ(),
		"CLOUDSDK_CORE_DISABLE_PROMPTS=1",
		"CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=1",
	)
	cmd.Stdin = stdinR
	cmd.Stdout = outW
	cmd.Stderr = outW
	// A new session holds every process the emulator starts, whatever
	// process groups they make, and detaches them from the caller's terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	stdinR.Close() // the children hold their own copies
	outW.Close()
	if err != nil {
		logFile.Close()
		outR.Close()
		stdinW.Close()
		return fmt.Errorf("exec gcloud: %w", err)
	}
	s.cmd, s.stdin, s.host = cmd, stdinW, host
	s.exited, s.outDone = make(chan struct{}), make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()

	ready := make(chan struct{})
	portTaken := make(chan struct{})
	go s.copyOutput(outR, logFile, port, ready, portTaken)

	err = s.waitReady(ctx, ready, portTaken)
	if err == nil {
		return nil
	}
	logTail := tail(readFile(s.logPath))
	if stopErr := s.stopProcesses(); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	return fmt.Errorf("%w\n%s", err, logTail)
}

// copyOutput copies the emulator's output into the log file line by line,
// closing ready when the emulator says it listens on port and portTaken when
// it says the port is in use. It closes s.outDone at end of file, which
// comes once gcloud, which relays Java's output, has exited.
func (s *Server) copyOutput(out io.ReadCloser, logFile *os.File, port int, ready, portTaken chan struct{}) {
	defer close(s.outDone)
	defer out.Close()
	defer logFile.Close()
	startedLine := "Server started, listening on " + strconv.Itoa(port)
	var readyClosed, takenClosed bool
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		_, _ = logFile.WriteString(line + "\n")
		s.log.Debug("emulator output", "line", line)
		switch {
		case !readyClosed && strings.Contains(line, startedLine):
			readyClosed = true
			close(ready)
		case !takenClosed && (strings.Contains(line, "BindException") || strings.Contains(line, "Address already in use")):
			takenClosed = true
			close(portTaken)
		}
	}
	// An over-long line ends scanning; keep draining so the emulator never
	// blocks on a full pipe.
	_, _ = io.Copy(logFile, out)
}

// waitReady waits for the emulator's "Server started" line and then for a
// gRPC call to succeed.
func (s *Server) waitReady(ctx context.Context, ready, portTaken <-chan struct{}) error {
	select {
	case <-ready:
	case <-portTaken:
		// The emulator reports a failed bind but keeps running; it is stopped by the caller.
		return fmt.Errorf("listen on %s: %w", s.host, errPortTaken)
	case <-s.outDone:
		return errors.New("emulator exited before it started serving")
	case <-ctx.Done():
		return fmt.Errorf("wait for emulator to start: %w", ctx.Err())
	}
	if err := probe(ctx, s.host); err != nil {
		return fmt.Errorf("probe emulator at %s: %w", s.host, err)
	}
	return nil
}

// probe lists topics at host over plaintext gRPC, retrying until it
// succeeds or ctx ends, to prove the server actually serves Pub/Sub.
func probe(ctx context.Context, host string) error {
	conn, err := grpc.NewClient(host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	client := pubsubpb.NewPublisherClient(conn)
	for {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = client.ListTopics(callCtx, &pubsubpb.ListTopicsRequest{Project: readyProject, PageSize: 1})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("list topics: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Host returns the server's address, "127.0.0.1:PORT": what
// PUBSUB_EMULATOR_HOST would hold for a client of this server.
func (s *Server) Host() string { return s.host }

// Kind returns KindEmulator ("emulator") or KindFake ("pstest").
func (s *Server) Kind() string { return s.kind }

// ClientOptions returns the options that point a Pub/Sub client at this
// server: its endpoint, plaintext gRPC, and no credentials or telemetry.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(s.host),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithTelemetryDisabled(),
	}
}

// Stop ends the server. For the emulator it sends SIGTERM to every process
// of the emulator's session (gcloud, Java and the watchdog shell), SIGKILL
// after five seconds to whatever is left, waits for them all to exit and
// removes the temporary directory. It is safe to call more than once; later
// calls return the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.fake != nil {
			if err := s.fake.Close(); err != nil {
				s.stopErr = fmt.Errorf("stop pstest: %w", err)
			}
			return
		}
		began := time.Now()
		err := s.stopProcesses()
		if rmErr := os.RemoveAll(s.dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove dir: %w", rmErr))
		}
		if err != nil {
			s.stopErr = fmt.Errorf("stop pubsub emulator: %w", err)
			return
		}
		s.log.Info("pubsub emulator stopped", "took", time.Since(began).Round(time.Millisecond))
	})
	return s.stopErr
}

// stopProcesses terminates the emulator's session and waits for it.
func (s *Server) stopProcesses() error {
	if s.cmd == nil {
		return nil
	}
	sid := s.cmd.Process.Pid // Setsid made the shell the session leader
	defer func() { s.cmd = nil }()
	_ = s.stdin.Close() // tells the watchdog to terminate gcloud's group too

	signalSession(sid, syscall.SIGTERM)
	if !waitSessionGone(sid, termGrace) {
		s.log.Warn("emulator ignored SIGTERM, killing it", "sid", sid)
		signalSession(sid, syscall.SIGKILL)
		if !waitSessionGone(sid, termGrace) {
			return fmt.Errorf("emulator session %d still has processes after SIGKILL", sid)
		}
	}
	// Every process is gone, so the shell is reaped and the output pipe is at
	// end of file promptly; the timeout only guards against surprises.
	for _, ch := range []chan struct{}{s.exited, s.outDone} {
		select {
		case <-ch:
		case <-time.After(termGrace):
			return fmt.Errorf("emulator session %d did not finish", sid)
		}
	}
	return nil
}

// signalSession sends sig to every live process of session sid.
func signalSession(sid int, sig syscall.Signal) {
	for _, pid := range sessionPIDs(sid) {
		_ = syscall.Kill(pid, sig) // a process may exit meanwhile
	}
}

// waitSessionGone polls until no live process is left in session sid or
// timeout passes, and reports whether the session is gone.
func waitSessionGone(sid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if len(sessionPIDs(sid)) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sessionPIDs lists the processes of session sid that have not exited.
// Zombies (exited, not yet reaped by their parent) are left out: an orphaned
// Java process is reaped by init, not by this process, and may linger as a
// zombie for a moment.
func sessionPIDs(sid int) []int {
	var pids []int
	for _, p := range processes() {
		if p.sid == sid && p.state != 'Z' && p.state != 'X' {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

// process is what this package needs to know about a running process.
type process struct {
	pid   int
	comm  string
	state byte
	pgid  int
	sid   int
}

// processes reads every process from /proc. It returns nothing where /proc
// is missing; the emulator is only supported on Linux.
func processes() []process {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var ps []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		if p, ok := parseStat(stat); ok && p.pid == pid {
			ps = append(ps, p)
		}
	}
	return ps
}

// parseStat parses the start of /proc/PID/stat: "pid (comm) state ppid pgrp
// session ...". The command name may contain spaces and parentheses, so the
// fields after it are found from the last ')'.
func parseStat(stat []byte) (process, bool) {
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return process{}, false
	}
	fields := strings.Fields(string(stat[end+1:]))
	if len(fields) < 4 || len(fields[0]) != 1 {
		return process{}, false
	}
	var p process
	var err1, err2, err3 error
	p.pid, err1 = strconv.Atoi(strings.TrimSpace(string(stat[:open])))
	p.pgid, err2 = strconv.Atoi(fields[2])
	p.sid, err3 = strconv.Atoi(fields[3])
	if err := errors.Join(err1, err2, err3); err != nil {
		return process{}, false
	}
	p.comm = string(stat[open+1 : end])
	p.state = fields[0][0]
	return p, true
}

// freePort asks the kernel for a currently unused loopback TCP port. Another
// process may take it before the emulator binds it; callers retry.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// readFile returns the file's contents, or nothing if it cannot be read.
func readFile(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return b
}

// tail returns the last lines of a log, enough to show why a start failed.
func tail(b []byte) []byte {
	const maxLines, maxBytes = 30, 4096
	b = bytes.TrimRight(b, "\n")
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return bytes.Join(lines, []byte("\n"))
}

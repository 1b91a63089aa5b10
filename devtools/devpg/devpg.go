// Package devpg runs a throwaway PostgreSQL cluster for demos, tests and
// benchmarks, so that a fresh machine with the PostgreSQL binaries on PATH
// needs no database set up by hand.
//
// Start runs initdb in a new temporary directory and then the postgres server
// itself as a direct child process, listening on a free loopback port with its
// unix socket inside that directory. Stop shuts it down and deletes the
// directory.
//
// PostgreSQL refuses to run as root. When the calling process is root, the
// binaries run as the "postgres" user instead, and the temporary directory is
// handed to that user; its parent directories must then be traversable by
// postgres, which the default (the system temporary directory) is.
//
// Cleanup when the caller dies: the server is started with a parent-death
// signal (SIGINT, PostgreSQL's fast shutdown), so a Go process that is killed
// without calling Stop, even with SIGKILL, normally takes its cluster down
// with it. The temporary directory is left behind in that case. The kernel
// ties that signal to the OS thread that started the server, so a caller that
// starts clusters from goroutines locked to threads that later exit can lose
// it; Stop is the reliable way to end a cluster.
package devpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Superuser is the role initdb creates; every URL connects as it, without a
// password.
const Superuser = "herald"

// startTimeout bounds how long Start waits for a freshly started server to
// accept connections when the caller's context has no earlier deadline.
const startTimeout = 60 * time.Second

// stopTimeout is how long Stop waits for each shutdown mode (fast, then
// immediate) before escalating.
const stopTimeout = 20 * time.Second

// portAttempts is how many free ports Start tries before it gives up, since
// another process can take a port between the moment it is picked and the
// moment the server binds it.
const portAttempts = 5

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Options configures Start.
type Options struct {
	// Dir is the parent of the cluster's temporary directory. Empty means the
	// system temporary directory.
	Dir string
	// Log receives progress and shutdown messages. Nil discards them.
	Log *slog.Logger
	// Settings are extra server settings, passed as `-c key=value`; they
	// override the defaults of DefaultSettings. listen_addresses and
	// unix_socket_directories are always set by Start.
	Settings map[string]string
}

// DefaultSettings returns the server settings Start uses unless Options
// overrides them. They suit a small throughput benchmark box (two cores, a
// few hundred connections): durable commits as in production, but WAL kept
// minimal because nothing replicates from a throwaway cluster, and
// checkpoints spread out so they do not dominate short runs.
//
// listen_addresses and unix_socket_directories are set by Start itself and
// are not part of this map.
func DefaultSettings() map[string]string {
	return map[string]string{
		"max_connections":    "300",
		"shared_buffers":     "512MB",
		"fsync":              "on",
		"synchronous_commit": "on",
		"wal_level":          "minimal",
		"max_wal_senders":    "0",
		"checkpoint_timeout": "15min",
		"max_wal_size":       "4GB",
	}
}

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	dir     string
	dataDir string
	logPath string
	port    int
	log     *slog.Logger

	cmd     *exec.Cmd
	exited  chan struct{} // closed once the server process has been reaped
	waitErr error         // the server's exit status, valid after exited closes

	stopOnce sync.Once
	stopErr  error
}

// Start creates a new cluster and returns once it accepts connections. The
// caller must call Stop.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}

	runAs, err := serverUser()
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	for _, bin := range []string{"initdb", "postgres"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("start postgres: find %s on PATH: %w", bin, err)
		}
	}

	dir, err := os.MkdirTemp(opts.Dir, "devpg-")
	if err != nil {
		return nil, fmt.Errorf("start postgres: create dir: %w", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start postgres: resolve dir: %w", err)
	}
	c := &Cluster{
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "postgres.log"),
		log:     log.With("component", "devpg", "dir", dir),
	}
	if err := c.start(ctx, runAs, opts.Settings); err != nil {
		_ = c.stopProcess() // normally a no-op: launch stops a server that fails to come up
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			c.log.Warn("remove cluster dir", "err", rmErr)
		}
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	return c, nil
}

// start prepares the directory, runs initdb and brings the server up.
func (c *Cluster) start(ctx context.Context, runAs *syscall.Credential, settings map[string]string) error {
	if len(c.dir)+len("/.s.PGSQL.65535.lock") > maxSocketPath {
		return fmt.Errorf("dir %s is too long to hold a unix socket; use a shorter Options.Dir", c.dir)
	}
	if runAs != nil {
		if err := checkTraversable(filepath.Dir(c.dir), runAs); err != nil {
			return err
		}
		if err := os.Chown(c.dir, int(runAs.Uid), int(runAs.Gid)); err != nil {
			return fmt.Errorf("hand dir to postgres user: %w", err)
		}
	}

	began := time.Now()
	if err := c.initdb(ctx, runAs); err != nil {
		return err
	}
	c.log.Debug("initdb done", "took", time.Since(began).Round(time.Millisecond))

	args := serverArgs(c.dataDir, c.dir, settings)
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		err = c.launch(ctx, runAs, port, args)
		if err == nil {
			c.log.Info("postgres ready", "port", port, "took", time.Since(began).Round(time.Millisecond))
			return nil
		}
		if !errors.Is(err, errPortTaken) || attempt >= portAttempts {
			return err
		}
		c.log.Debug("postgres port taken, retrying", "port", port)
	}
}

// initdb creates the data directory with the herald superuser and trust
// authentication for local and loopback connections.
func (c *Cluster) initdb(ctx context.Context, runAs *syscall.Credential) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "initdb",
		"--pgdata="+c.dataDir,
		"--username="+Superuser,
		"--auth-local=trust",
		"--auth-host=trust",
		"--encoding=UTF8",
		"--locale=C",
		// The cluster is discarded after use, so skipping initdb's own fsync
		// of every new file is safe and saves a noticeable part of startup.
		"--no-sync",
	)
	cmd.Dir = c.dir
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: runAs}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("run initdb: %w\n%s", err, tail(out.Bytes()))
	}
	return nil
}

// errPortTaken reports that the server could not bind its TCP port.
var errPortTaken = errors.New("port already in use")

// launch starts the server on port and waits until it accepts connections.
// If the server exits first, launch reports why, wrapping errPortTaken when
// the port was taken meanwhile.
func (c *Cluster) launch(ctx context.Context, runAs *syscall.Credential, port int, args []string) error {
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close() // the child keeps its own descriptor

	cmd := exec.Command("postgres", append([]string{"-p", strconv.Itoa(port)}, args...)...)
	cmd.Dir = c.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: runAs,
		// A new process group keeps a Ctrl-C in the caller's terminal from
		// reaching the server directly; Stop shuts it down in order instead.
		Setpgid:   true,
		Pdeathsig: syscall.SIGINT,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec postgres: %w", err)
	}
	exited := make(chan struct{})
	c.cmd, c.exited, c.port = cmd, exited, port
	go func() {
		c.waitErr = cmd.Wait()
		close(exited)
	}()

	err = c.waitReady(ctx, exited)
	if err == nil {
		return nil
	}
	c.stopProcess()
	logTail := tail(readFile(c.logPath))
	if bytes.Contains(logTail, []byte("could not bind")) || bytes.Contains(logTail, []byte("could not create any TCP/IP sockets")) {
		// Start the next attempt with a clean log so that its tail is its own.
		_ = os.Truncate(c.logPath, 0)
		return fmt.Errorf("%w: %w", errPortTaken, err)
	}
	return fmt.Errorf("%w\n%s", err, logTail)
}

// waitReady polls the server through its unix socket until it answers a
// ping. Only this cluster's server can create that socket, so a stranger
// listening on the same TCP port cannot be mistaken for it; the TCP address
// is checked once the socket answers.
func (c *Cluster) waitReady(ctx context.Context, exited <-chan struct{}) error {
	socketDSN := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable connect_timeout=5", c.dir, c.port, Superuser)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-exited:
			return fmt.Errorf("postgres exited before accepting connections: %v", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres to accept connections: %w (last attempt: %v)", ctx.Err(), lastErr)
		case <-tick.C:
		}
		if lastErr = ping(ctx, socketDSN); lastErr != nil {
			continue
		}
		if err := ping(ctx, c.URL("postgres")); err != nil {
			return fmt.Errorf("ping postgres over tcp: %w", err)
		}
		return nil
	}
}

// ping opens one connection to dsn and checks it.
func ping(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

// Port returns the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Dir returns the cluster's temporary directory, which holds the data
// directory, the server log (postgres.log) and the unix socket.
func (c *Cluster) Dir() string { return c.dir }

// URL returns a connection URL for database on this cluster, as the
// superuser, without TLS.
func (c *Cluster) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + database,
		RawPath:  "/" + url.PathEscape(database),
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates the database name, quoting it as an identifier so
// that any name is safe. A database that already exists is not an error, so
// callers may create the databases they need without checking first.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("create database: name is empty")
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// Stop shuts the server down (fast shutdown: open sessions are disconnected
// and their transactions rolled back), waits for it to exit and removes the
// cluster's directory. It is safe to call more than once; later calls return
// the first call's result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		began := time.Now()
		err := c.stopProcess()
		if rmErr := os.RemoveAll(c.dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove dir: %w", rmErr))
		}
		if err != nil {
			c.stopErr = fmt.Errorf("stop postgres: %w", err)
			return
		}
		c.log.Info("postgres stopped", "took", time.Since(began).Round(time.Millisecond))
	})
	return c.stopErr
}

// stopProcess ends the server if one was started: SIGINT (fast shutdown),
// then SIGQUIT (immediate shutdown), then SIGKILL for the whole process
// group, waiting after each.
func (c *Cluster) stopProcess() error {
	if c.cmd == nil {
		return nil
	}
	steps := []struct {
		sig   syscall.Signal
		group bool
		wait  time.Duration
	}{
		{syscall.SIGINT, false, stopTimeout},
		{syscall.SIGQUIT, false, stopTimeout},
		{syscall.SIGKILL, true, stopTimeout},
	}
	pid := c.cmd.Process.Pid
	for _, step := range steps {
		select {
		case <-c.exited:
			return nil
		default:
		}
		target := pid
		if step.group {
			target = -pid
		}
		if err := syscall.Kill(target, step.sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal postgres: %w", err)
		}
		select {
		case <-c.exited:
			return nil
		case <-time.After(step.wait):
			c.log.Warn("postgres did not exit in time", "signal", step.sig.String())
		}
	}
	return fmt.Errorf("postgres (pid %d) did not exit", pid)
}

// serverArgs builds the postgres command line apart from the port.
func serverArgs(dataDir, socketDir string, extra map[string]string) []string {
	settings := DefaultSettings()
	maps.Copy(settings, extra)
	settings["listen_addresses"] = "127.0.0.1"
	settings["unix_socket_directories"] = socketDir
	args := []string{"-D", dataDir}
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		args = append(args, "-c", k+"="+settings[k])
	}
	return args
}

// serverUser returns the credential to run the PostgreSQL binaries with: nil
// (the current user) unless the process is root, which PostgreSQL refuses.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses root: look up user postgres: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse uid of postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse gid of postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// checkTraversable reports an error naming the first directory from dir up
// to the root that the postgres user could not enter, because initdb's own
// message ("could not change directory ... Permission denied") does not say
// which one.
func checkTraversable(dir string, cred *syscall.Credential) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("check dir permissions: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok {
			mode := fi.Mode().Perm()
			var canEnter bool
			switch {
			case st.Uid == cred.Uid:
				canEnter = mode&0o100 != 0
			case st.Gid == cred.Gid:
				canEnter = mode&0o010 != 0
			default:
				canEnter = mode&0o001 != 0
			}
			if !canEnter {
				return fmt.Errorf("dir %s (mode %v) is not traversable by user postgres; use a parent dir others can enter, such as the default", d, mode)
			}
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}

// freePort asks the kernel for a currently unused loopback TCP port. Another
// process may take it before the server binds it; callers retry.
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

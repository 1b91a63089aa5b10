package devpg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// requirePostgres skips the test when the PostgreSQL binaries are missing,
// except on CI, where a missing binary means the machine setup is broken and
// the test must fail rather than silently pass.
func requirePostgres(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"initdb", "postgres"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not on PATH, and CI=true requires it: %v", bin, err)
			}
			t.Skipf("%s is not on PATH; install PostgreSQL to run this test", bin)
		}
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestClusterLifecycle(t *testing.T) {
	requirePostgres(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	c, err := Start(ctx, Options{Log: testLogger(t), Settings: map[string]string{"work_mem": "7MB"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })

	// A name that needs quoting, created twice to show it is idempotent.
	const db = `herald "test" db`
	for range 2 {
		if err := c.CreateDatabase(ctx, db); err != nil {
			t.Fatal(err)
		}
	}

	conn, err := pgx.Connect(ctx, c.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	var gotDB, maxConns, walLevel, workMem, fsync, user string
	err = conn.QueryRow(ctx, `select current_database(), current_setting('max_connections'),
		current_setting('wal_level'), current_setting('work_mem'), current_setting('fsync'), current_user`).
		Scan(&gotDB, &maxConns, &walLevel, &workMem, &fsync, &user)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{db, "300", "minimal", "7MB", "on", Superuser}
	got := []string{gotDB, maxConns, walLevel, workMem, fsync, user}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("setting %d = %q, want %q", i, got[i], want[i])
		}
	}

	port, dir := c.Port(), c.Dir()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
		conn.Close()
		t.Errorf("port %d still accepts connections after Stop", port)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir %s still exists after Stop (stat: %v)", dir, err)
	}
}

func TestStartFailureIncludesServerLog(t *testing.T) {
	requirePostgres(t)
	parent := t.TempDir()
	if os.Geteuid() == 0 {
		// t.TempDir and its parent are private to root; the postgres user
		// must be able to enter them.
		for _, d := range []string{filepath.Dir(parent), parent} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, err := Start(t.Context(), Options{Dir: parent, Log: testLogger(t), Settings: map[string]string{"shared_buffers": "lots"}})
	if err == nil {
		t.Fatal("Start succeeded with an invalid setting")
	}
	t.Logf("Start error, as a caller sees it:\n%v", err)
	if !strings.Contains(err.Error(), "shared_buffers") {
		t.Errorf("error does not quote the server log: %v", err)
	}
	entries, rerr := os.ReadDir(parent)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if len(entries) != 0 {
		t.Errorf("failed Start left %d entries in %s", len(entries), parent)
	}
}

func TestStartRejectsUntraversableDir(t *testing.T) {
	requirePostgres(t)
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to another user")
	}
	parent := t.TempDir() // mode 0700, owned by root
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Start(t.Context(), Options{Dir: parent})
	if err == nil || !strings.Contains(err.Error(), "not traversable") {
		t.Fatalf("Start error = %v, want one saying the dir is not traversable", err)
	}
}

func TestURL(t *testing.T) {
	c := &Cluster{port: 5433}
	for db, want := range map[string]string{
		"herald":   "postgres://herald@127.0.0.1:5433/herald?sslmode=disable",
		"a b/c?d":  "postgres://herald@127.0.0.1:5433/a%20b%2Fc%3Fd?sslmode=disable",
		"postgres": "postgres://herald@127.0.0.1:5433/postgres?sslmode=disable",
	} {
		if got := c.URL(db); got != want {
			t.Errorf("URL(%q) = %q, want %q", db, got, want)
		}
	}
}

func TestServerArgsOverrideDefaults(t *testing.T) {
	args := strings.Join(serverArgs("/d/data", "/d", map[string]string{"fsync": "off", "jit": "off"}), " ")
	for _, want := range []string{"-D /d/data", "-c fsync=off", "-c jit=off", "-c max_connections=300", "-c unix_socket_directories=/d", "-c listen_addresses=127.0.0.1"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if strings.Contains(args, "fsync=on") {
		t.Errorf("args %q keep the overridden default", args)
	}
}

func TestLaunchDetectsTakenPort(t *testing.T) {
	requirePostgres(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port

	runAs, err := serverUser()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "devpg-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	c := &Cluster{dir: dir, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "postgres.log"), log: testLogger(t)}
	if runAs != nil {
		if err := os.Chown(dir, int(runAs.Uid), int(runAs.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.initdb(t.Context(), runAs); err != nil {
		t.Fatal(err)
	}
	err = c.launch(t.Context(), runAs, taken, serverArgs(c.dataDir, dir, nil))
	t.Cleanup(func() { _ = c.stopProcess() })
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("launch on a taken port: %v, want errPortTaken", err)
	}
}

// TestKilledCallerTakesClusterDown runs Start in a child test process, kills
// that process with SIGKILL, and checks that the server shuts down anyway.
func TestKilledCallerTakesClusterDown(t *testing.T) {
	if os.Getenv("DEVPG_HELPER") == "1" {
		c, err := Start(context.Background(), Options{})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Printf("port=%d pid=%d dir=%s\n", c.Port(), c.cmd.Process.Pid, c.Dir())
		select {} // wait to be killed
	}
	requirePostgres(t)

	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledCallerTakesClusterDown$")
	cmd.Env = append(os.Environ(), "DEVPG_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var port, pid int
	var dir string
	line, err := bufio.NewReader(out).ReadString('\n')
	if _, serr := fmt.Sscanf(line, "port=%d pid=%d dir=%s", &port, &pid, &dir); serr != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper said %q (read error %v)", line, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// A killed caller cannot remove the cluster's directory; that is documented.
	t.Cleanup(func() { _ = os.RemoveAll(dir) })

	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err != nil && !processAlive(pid) {
			return
		}
		if conn != nil {
			conn.Close()
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postgres (pid %d, port %d) still running 30s after its caller was killed", pid, port)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// processAlive reports whether pid names a process that has not exited; a
// zombie waiting to be reaped counts as exited.
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

package devpubsub

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// requireGcloud skips the test when gcloud is missing, except on CI, where a
// missing gcloud means the machine setup is broken and the test must fail
// rather than silently pass.
func requireGcloud(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("gcloud"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("gcloud is not on PATH, and CI=true requires it: %v", err)
		}
		t.Skip("gcloud is not on PATH; install the Google Cloud CLI with the Pub/Sub emulator to run this test")
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func TestEmulatorRoundTrip(t *testing.T) {
	requireGcloud(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	s, err := Start(ctx, Options{Log: testLogger(t), RequireEmulator: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	if s.Kind() != KindEmulator {
		t.Fatalf("Kind() = %q, want %q", s.Kind(), KindEmulator)
	}
	sid, dir := s.cmd.Process.Pid, s.dir
	if !strings.HasPrefix(s.Host(), "127.0.0.1:") {
		t.Errorf("Host() = %q, want a 127.0.0.1 address", s.Host())
	}

	roundTrip(ctx, t, s)

	if !sessionHasJava(sid) {
		t.Errorf("no java process in the emulator's session %d before Stop; the check below proves nothing", sid)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if pids := sessionPIDs(sid); len(pids) > 0 {
		t.Errorf("session %d still has live processes %v after Stop", sid, pids)
	}
	if conn, err := net.DialTimeout("tcp", s.Host(), time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Stop", s.Host())
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir %s still exists after Stop (stat: %v)", dir, err)
	}
}

func TestFakeRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{Log: testLogger(t), Fake: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	if s.Kind() != KindFake {
		t.Fatalf("Kind() = %q, want %q", s.Kind(), KindFake)
	}
	roundTrip(ctx, t, s)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// roundTrip creates a topic and a subscription on s, publishes one message
// and receives it.
func roundTrip(ctx context.Context, t *testing.T, s *Server) {
	t.Helper()
	const project = "herald-test"
	client, err := pubsub.NewClient(ctx, project, s.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	topic, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + project + "/topics/roundtrip"})
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	sub, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:  "projects/" + project + "/subscriptions/roundtrip",
		Topic: topic.GetName(),
	})
	if err != nil {
		t.Fatalf("create subscription: %v", err)
	}

	pub := client.Publisher(topic.GetName())
	defer pub.Stop()
	id, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("hello"), Attributes: map[string]string{"k": "v"}}).Get(ctx)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}

	recvCtx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	var got *pubsub.Message
	err = client.Subscriber(sub.GetName()).Receive(recvCtx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		if got == nil {
			got = m
			stop()
		}
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if got == nil {
		t.Fatal("received nothing within 30s")
	}
	if got.ID != id || string(got.Data) != "hello" || got.Attributes["k"] != "v" {
		t.Errorf("received id=%q data=%q attrs=%v, want id=%q data=%q attrs=map[k:v]", got.ID, got.Data, got.Attributes, id, "hello")
	}
}

func TestFallsBackToFakeWithoutGcloud(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	s, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if s.Kind() != KindFake {
		t.Errorf("Kind() = %q without gcloud, want %q", s.Kind(), KindFake)
	}

	if s, err := Start(t.Context(), Options{RequireEmulator: true}); err == nil {
		s.Stop()
		t.Error("Start with RequireEmulator succeeded without gcloud on PATH")
	}
}

func TestRejectsContradictoryOptions(t *testing.T) {
	if s, err := Start(t.Context(), Options{Fake: true, RequireEmulator: true}); err == nil {
		s.Stop()
		t.Error("Start accepted Fake together with RequireEmulator")
	}
}

func TestLaunchDetectsTakenPort(t *testing.T) {
	requireGcloud(t)
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	dir := t.TempDir()
	if err := os.Mkdir(dir+"/data", 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{kind: KindEmulator, dir: dir, logPath: dir + "/emulator.log", log: testLogger(t)}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err = s.launch(ctx, gcloud, l.Addr().(*net.TCPAddr).Port)
	if !errors.Is(err, errPortTaken) {
		_ = s.stopProcesses()
		t.Fatalf("launch on a taken port: %v, want errPortTaken", err)
	}
	if s.cmd != nil {
		t.Error("launch left the failed emulator's process recorded")
	}
}

// TestKilledCallerTakesEmulatorDown runs Start in a child test process,
// kills that process with SIGKILL, and checks that the emulator's process
// group, Java included, ends anyway.
func TestKilledCallerTakesEmulatorDown(t *testing.T) {
	if os.Getenv("DEVPUBSUB_HELPER") == "1" {
		s, err := Start(context.Background(), Options{RequireEmulator: true})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Printf("sid=%d dir=%s\n", s.cmd.Process.Pid, s.dir)
		select {} // wait to be killed
	}
	requireGcloud(t)

	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledCallerTakesEmulatorDown$")
	cmd.Env = append(os.Environ(), "DEVPUBSUB_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var sid int
	var dir string
	line, err := bufio.NewReader(out).ReadString('\n')
	if _, serr := fmt.Sscanf(line, "sid=%d dir=%s", &sid, &dir); serr != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper said %q (read error %v)", line, err)
	}
	// A killed caller cannot remove the emulator's directory; that is documented.
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if !sessionHasJava(sid) {
		t.Errorf("no java process in the emulator's session %d", sid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// The watchdog terminates gcloud's process group only; the shell ends by
	// itself. Nothing should be left in the session.
	if !waitSessionGone(sid, 20*time.Second) {
		pids := sessionPIDs(sid)
		signalSession(sid, syscall.SIGKILL)
		t.Fatalf("emulator processes %v still running 20s after their caller was killed", pids)
	}
}

// sessionHasJava reports whether a live java process belongs to session sid.
func sessionHasJava(sid int) bool {
	for _, p := range processes() {
		if p.sid == sid && p.comm == "java" && p.state != 'Z' {
			return true
		}
	}
	return false
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want process
		ok   bool
	}{
		{"123 (java) S 1 120 110 0 -1", process{pid: 123, comm: "java", state: 'S', pgid: 120, sid: 110}, true},
		{"7 (odd) name (x)) Z 5 99 98 0", process{pid: 7, comm: "odd) name (x)", state: 'Z', pgid: 99, sid: 98}, true},
		{"garbage", process{}, false},
		{"8 (short) R 1 2", process{}, false},
	} {
		got, ok := parseStat([]byte(tc.stat))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v, %v", tc.stat, got, ok, tc.want, tc.ok)
		}
	}
}

// TestStartsAgainOnTheSamePort stops a server and starts a new one on its
// port, as a broker that restarts would: clients find it where they looked
// before, and it has forgotten every topic.
func TestStartsAgainOnTheSamePort(t *testing.T) {
	requireGcloud(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	first, err := Start(ctx, Options{Log: testLogger(t), RequireEmulator: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Stop() })
	roundTrip(ctx, t, first)
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(first.Host())
	p, _ := strconv.Atoi(port)
	again, err := Start(ctx, Options{Log: testLogger(t), RequireEmulator: true, Port: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Stop() })
	if again.Host() != first.Host() {
		t.Fatalf("started again at %s, want %s", again.Host(), first.Host())
	}
	roundTrip(ctx, t, again) // creates the topic again: none is left over
}

// Package stack runs Herald on one machine with real parts: a throwaway
// PostgreSQL, the Pub/Sub emulator (or Google's fake where gcloud is
// absent), a mail catcher that speaks SMTP as a submission relay does
// (STARTTLS and AUTH required), the four services as separate
// processes, and the local edge in front of ingest enforcing the Istio
// policy files from deploy/k8s. `make demo`, `make bench` and the end-to-end tests
// all start Herald through it, so they exercise the same wiring.
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"herald/devtools/adcatch"
	"herald/devtools/devpg"
	"herald/devtools/devpubsub"
	"herald/devtools/espcatch"
	"herald/devtools/mailcatch"
)

// Services are Herald's binaries in pipeline order.
var Services = []string{"ingest", "recommend", "render", "dispatch"}

// Edge is the name of the local edge process (deploy/edge), which Kill,
// Launch, Terminate and Proc accept like a service's.
const Edge = "edge"

// The Istio policy files the edge enforces, relative to the module root.
const (
	RequestAuthenticationFile = "deploy/k8s/components/istio/request-authentication.yaml"
	AuthorizationPolicyFile   = "deploy/k8s/components/istio/authorization-policy.yaml"
)

// UnsubscribeSecret signs the local stack's unsubscribe links; render
// signs with it and ingest verifies.
const UnsubscribeSecret = "local-stack-unsubscribe-secret"

// Options configure a stack.
type Options struct {
	// Dir holds binaries, logs and server data; a temporary directory when
	// empty (removed by Stop).
	Dir string
	// ModuleRoot is the Herald checkout to build; found from the working
	// directory when empty.
	ModuleRoot string
	// BinDir holds prebuilt binaries; when empty they are built into Dir.
	BinDir string
	// Maildir, when set, is where the mail catcher keeps every message as
	// an .eml file; otherwise it only counts them.
	Maildir string
	// MaxMailFiles, when positive, keeps only the first so many messages
	// in Maildir; the rest are counted.
	MaxMailFiles int
	// DatabaseURL and PubsubHost reuse running servers instead of starting
	// them (tests share one of each). With DatabaseURL set, the database
	// must exist; the schema is applied.
	DatabaseURL string
	PubsubHost  string
	// Project is the Pub/Sub project; isolates stacks sharing an emulator.
	Project string
	// FakePubsub uses pstest even where the emulator is installed.
	FakePubsub bool
	// Flags adds command-line flags per service.
	Flags map[string][]string
	// NoLookup leaves dispatch without the provider lookup, so sends with
	// unknown outcome are recorded ambiguous instead of reconciled.
	NoLookup bool
	// ESP starts an HTTP email API (devtools/espcatch) and lists it as an email
	// provider of dispatch: after SMTP, or alone with EmailProviders "esp".
	ESP bool
	// EmailProviders overrides dispatch's -email-providers.
	EmailProviders string
	// Ads starts a local Meta Marketing API (devtools/adcatch) for the ad channel.
	Ads bool
	// TraceEndpoint, when set, is the OTLP/HTTP endpoint every service
	// exports its spans to.
	TraceEndpoint string
	// PostgresSettings are extra server settings of the PostgreSQL the
	// stack starts (see devpg.Options.Settings).
	PostgresSettings map[string]string
	// Replicas runs more than one process of a service; the extra ones are
	// named "<service>-2", "<service>-3", … and take Flags of the service.
	Replicas map[string]int
	Log      *slog.Logger
}

// Stack is a running Herald.
type Stack struct {
	Dir         string
	DatabaseURL string
	PubsubHost  string
	PubsubKind  string
	Project     string
	Mail        *mailcatch.Server
	// ESP and Ads are the local HTTP email API and ad platform, when asked for.
	ESP *espcatch.Server
	Ads *adcatch.Server
	// MailAPI is the base URL of the mail catcher's HTTP API.
	MailAPI string
	// IngestURL is the base URL of the partner API as partners and
	// recipients reach it: the edge, which needs a partner token (see
	// MintToken; Client sends one) except on the public paths.
	IngestURL string
	// IngestDirectURL is ingest itself, behind the edge; it trusts
	// X-Tenant-ID as it does from the gateway in a cluster.
	IngestDirectURL string
	// FeedbackSMTPAddr is ingest's SMTP receiver of bounces to dispatch's
	// VERP return paths, as the return domain's MX would reach it.
	FeedbackSMTPAddr string

	opts      Options
	log       *slog.Logger
	binDir    string
	ownDir    bool
	root      string
	edgeAddr  string
	cluster   *devpg.Cluster
	pubsub    *devpubsub.Server
	mailHTTP  *http.Server
	relay     *relay // the mail catcher's TLS and credentials
	mu        sync.Mutex
	procs     map[string]*Proc
	addrs     map[string]string
	stopOnce  sync.Once
	stopError error
}

// Start brings the whole stack up and returns once every service is ready.
// On error, whatever was started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	s := &Stack{opts: opts, log: opts.Log, procs: map[string]*Proc{}, addrs: map[string]string{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	s.Dir = opts.Dir
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "herald-stack-"); err != nil {
			return nil, fmt.Errorf("make stack dir: %w", err)
		}
		s.ownDir = true
		// PostgreSQL runs as its own user and must be able to enter it.
		if err := os.Chmod(s.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("make stack dir: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("make log dir: %w", err)
	}
	s.binDir = opts.BinDir
	if s.binDir == "" {
		s.binDir = filepath.Join(s.Dir, "bin")
		if err := Build(ctx, opts.ModuleRoot, s.binDir); err != nil {
			return nil, err
		}
	}
	if err := s.startServers(ctx); err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	if s.root = opts.ModuleRoot; s.root == "" {
		if s.root, err = ModuleRoot(); err != nil {
			return nil, err
		}
	}
	if err := writeDevJWKS(filepath.Join(s.Dir, "jwks.json")); err != nil {
		return nil, err
	}
	// The edge is the last process up: partners reach ingest through it.
	var procs []string
	for _, svc := range Services {
		procs = append(procs, s.Instances(svc)...)
	}
	procs = append(procs, Edge)
	for _, name := range procs {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.addrs[name] = "127.0.0.1:" + strconv.Itoa(port)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.edgeAddr = "127.0.0.1:" + strconv.Itoa(port)
	if port, err = freePort(); err != nil {
		return nil, err
	}
	s.FeedbackSMTPAddr = "127.0.0.1:" + strconv.Itoa(port)
	s.IngestURL = "http://" + s.edgeAddr
	s.IngestDirectURL = "http://" + s.addrs["ingest"]
	for _, name := range procs {
		if err := s.Launch(name); err != nil {
			return nil, err
		}
	}
	for _, name := range procs {
		if err := s.WaitReady(ctx, name); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Instances names the processes of a service: the service's own name,
// then "<service>-2" and so on for extra replicas.
func (s *Stack) Instances(service string) []string {
	names := []string{service}
	for i := 2; i <= s.opts.Replicas[service]; i++ {
		names = append(names, service+"-"+strconv.Itoa(i))
	}
	return names
}

// serviceOf is the service an instance name runs.
func serviceOf(instance string) string {
	for _, svc := range Services {
		if instance == svc || strings.HasPrefix(instance, svc+"-") {
			return svc
		}
	}
	return instance
}

// Build compiles the four services and the edge into dir.
func Build(ctx context.Context, root, dir string) error {
	if root == "" {
		var err error
		if root, err = ModuleRoot(); err != nil {
			return err
		}
	}
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	for _, s := range Services {
		args = append(args, "./"+s)
	}
	args = append(args, "./deploy/edge")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build services: %w\n%s", err, out)
	}
	return nil
}

// ModuleRoot finds the Herald checkout containing the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module herald\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find Herald checkout: no go.mod of module herald above the working directory")
		}
		dir = parent
	}
}

func (s *Stack) startServers(ctx context.Context) error {
	s.DatabaseURL = s.opts.DatabaseURL
	if s.DatabaseURL == "" {
		c, err := devpg.Start(ctx, devpg.Options{Dir: s.Dir, Log: s.log, Settings: s.opts.PostgresSettings})
		if err != nil {
			return err
		}
		s.cluster = c
		if err := c.CreateDatabase(ctx, "herald"); err != nil {
			return err
		}
		s.DatabaseURL = c.URL("herald")
		s.log.Info("postgres started", "url", s.DatabaseURL)
	}
	s.PubsubHost, s.PubsubKind = s.opts.PubsubHost, "emulator"
	if s.PubsubHost == "" {
		ps, err := devpubsub.Start(ctx, devpubsub.Options{Dir: s.Dir, Log: s.log, Fake: s.opts.FakePubsub})
		if err != nil {
			return err
		}
		s.pubsub = ps
		s.PubsubHost, s.PubsubKind = ps.Host(), ps.Kind()
		s.log.Info("pubsub started", "host", s.PubsubHost, "kind", s.PubsubKind)
	}
	s.Project = s.opts.Project
	if s.Project == "" {
		s.Project = "herald-local"
	}
	relay, err := newRelay(s.Dir)
	if err != nil {
		return err
	}
	s.relay = relay
	mail, err := mailcatch.Start(ctx, mailcatch.Options{
		Maildir: s.opts.Maildir, MaxFiles: s.opts.MaxMailFiles, Domain: "mail.herald.test", Log: s.log,
		TLSConfig: s.relay.tls, RequireTLS: true, Auth: &s.relay.creds,
	})
	if err != nil {
		return err
	}
	s.Mail = mail
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen mail api: %w", err)
	}
	s.MailAPI = "http://" + ln.Addr().String()
	s.mailHTTP = &http.Server{Handler: mail.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.mailHTTP.Serve(ln) }()
	s.log.Info("mail catcher started", "smtp", mail.SMTPAddr(), "api", s.MailAPI)
	if s.opts.ESP {
		if s.ESP, err = espcatch.Start(ctx, espcatch.Options{APIKey: espKey, Log: s.log}); err != nil {
			return err
		}
	}
	if s.opts.Ads {
		if s.Ads, err = adcatch.Start(ctx, adcatch.Options{AccessToken: adsToken, AdAccountID: adsAccount, Log: s.log}); err != nil {
			return err
		}
	}
	return nil
}

// Keys of the local ESP and ad platform, and the local ad account.
const (
	espKey     = "local-esp-key"
	adsToken   = "local-meta-token"
	adsAccount = "1000"
)

func (s *Stack) env(name string) []string {
	svc := serviceOf(name)
	env := append(os.Environ(),
		"HERALD_DATABASE_URL="+s.DatabaseURL,
		"PUBSUB_EMULATOR_HOST="+s.PubsubHost,
		"HERALD_PUBSUB_PROJECT="+s.Project,
		"HERALD_LOG_LEVEL=info",
		"HERALD_SHUTDOWN_GRACE=10s",
	)
	if s.opts.TraceEndpoint != "" {
		env = append(env, "HERALD_OTLP_ENDPOINT="+s.opts.TraceEndpoint, "HERALD_TRACE_FLUSH=300ms")
	}
	if addr, ok := s.addrs[name]; ok {
		env = append(env, "HERALD_HTTP_ADDR="+addr)
	}
	switch svc {
	case "ingest":
		var stages []string
		for _, svc := range Services[1:] {
			stages = append(stages, svc+"=http://"+s.addrs[svc]+"/metrics")
		}
		env = append(env, "HERALD_UNSUBSCRIBE_SECRET="+UnsubscribeSecret, "HERALD_OPS_METRICS="+strings.Join(stages, ","))
		if name == "ingest" { // one instance takes the return domain's mail
			env = append(env, s.relay.inboundEnv(s.FeedbackSMTPAddr)...)
		}
	case "render":
		env = append(env, "HERALD_PUBLIC_URL="+s.IngestURL, "HERALD_UNSUBSCRIBE_SECRET="+UnsubscribeSecret)
	case Edge:
		env = append(env,
			"HERALD_EDGE_LISTEN="+s.edgeAddr,
			"HERALD_EDGE_UPSTREAM="+s.IngestDirectURL,
			"HERALD_EDGE_REQUEST_AUTHENTICATION="+filepath.Join(s.root, RequestAuthenticationFile),
			"HERALD_EDGE_AUTHORIZATION_POLICY="+filepath.Join(s.root, AuthorizationPolicyFile),
			"HERALD_EDGE_JWKS="+filepath.Join(s.Dir, "jwks.json"),
		)
	case "dispatch":
		env = append(env, s.relay.env(s.Mail.SMTPAddr())...)
		env = append(env, "HERALD_DB_MAX_CONNS=24")
		providers := s.opts.EmailProviders
		if s.ESP != nil {
			env = append(env, "HERALD_ESP_URL="+s.ESP.URL(), "HERALD_ESP_KEY="+espKey)
			if providers == "" {
				providers = "smtp,esp"
			}
		}
		if providers != "" {
			env = append(env, "HERALD_EMAIL_PROVIDERS="+providers)
		}
		if s.Ads != nil {
			env = append(env, "HERALD_ADS_URL="+s.Ads.URL(), "HERALD_ADS_ACCOUNT="+adsAccount, "HERALD_ADS_TOKEN="+adsToken)
		}
		if !s.opts.NoLookup {
			env = append(env, "HERALD_SMTP_LOOKUP_URL="+s.MailAPI+"/api/lookup")
		}
	}
	return env
}

func (s *Stack) migrate(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, "ingest"), "migrate")
	cmd.Env = s.env("migrate")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("migrate: %w\n%s", err, out)
	}
	return nil
}

// Proc is one running service process.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string
	done chan struct{}
	err  error
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Launch starts the named service (again), appending to its log.
func (s *Stack) Launch(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[name]; p != nil && !p.Exited() {
		return fmt.Errorf("launch %s: already running as pid %d", name, p.Pid())
	}
	logPath := filepath.Join(s.Dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s log: %w", name, err)
	}
	svc := serviceOf(name)
	cmd := exec.Command(filepath.Join(s.binDir, svc), s.opts.Flags[svc]...)
	cmd.Env = s.env(name)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group keeps a terminal's Ctrl-C from reaching the
	// service before the stack stops it in order; the parent-death signal
	// ends it if the stack itself is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	s.procs[name] = p
	s.log.Info("service started", "service", name, "pid", p.Pid(), "addr", s.addrs[name])
	return nil
}

// Proc returns the named service's current process.
func (s *Stack) Proc(name string) *Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[name]
}

// Addr is the named service's HTTP address.
func (s *Stack) Addr(name string) string { return s.addrs[name] }

// WaitReady waits until the named service answers /readyz.
func (s *Stack) WaitReady(ctx context.Context, name string) error {
	p := s.Proc(name)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	url := "http://" + s.addrs[name] + "/readyz"
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited during start (%v); see %s:\n%s", name, p.err, p.Log, tail(p.Log))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w; see %s", name, ctx.Err(), p.Log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Kill ends the named service with SIGKILL, as a crash would, and waits.
func (s *Stack) Kill(name string) error {
	p := s.Proc(name)
	if p == nil || p.Exited() {
		return fmt.Errorf("kill %s: not running", name)
	}
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	<-p.done
	s.log.Info("service killed", "service", name)
	return nil
}

// Terminate sends SIGTERM and waits up to timeout for a clean exit.
func (s *Stack) Terminate(name string, timeout time.Duration) error {
	p := s.Proc(name)
	if p == nil || p.Exited() {
		return nil
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s exited with %v; see %s", name, p.err, p.Log)
		}
		return nil
	case <-time.After(timeout):
		_ = p.Cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %s after SIGTERM", name, timeout)
	}
}

// Stop stops the services (SIGTERM, in reverse pipeline order), the mail
// catcher and any server the stack started, and removes its directory if
// it made it. It is safe to call more than once.
func (s *Stack) Stop() error {
	s.stopOnce.Do(func() {
		var errs []error
		if err := s.Terminate(Edge, 30*time.Second); err != nil {
			errs = append(errs, err)
		}
		for i := len(Services) - 1; i >= 0; i-- {
			for _, name := range s.Instances(Services[i]) {
				if err := s.Terminate(name, 30*time.Second); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if s.mailHTTP != nil {
			_ = s.mailHTTP.Close()
		}
		if s.Mail != nil {
			_ = s.Mail.Close()
		}
		if s.ESP != nil {
			_ = s.ESP.Close()
		}
		if s.Ads != nil {
			_ = s.Ads.Close()
		}
		if s.pubsub != nil {
			errs = append(errs, s.pubsub.Stop())
		}
		if s.cluster != nil {
			errs = append(errs, s.cluster.Stop())
		}
		if s.ownDir {
			errs = append(errs, os.RemoveAll(s.Dir))
		}
		s.stopError = errors.Join(errs...)
	})
	return s.stopError
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

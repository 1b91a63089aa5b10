// Command edge is the local stand-in for Herald's Istio ingress gateway: it
// reads the RequestAuthentication and AuthorizationPolicy that ship in
// deploy/k8s/components/istio and enforces them in front of ingest, so that
// `make demo` and the tests exercise the policy the cluster gets. Partner
// requests need a JWT from the configured issuer and audience; its tenant
// claim becomes X-Tenant-ID, which no client can set itself. The public
// paths (one-click unsubscribe, provider webhooks) pass without a token. A
// request body that arrives slower than -body-min-rate is cut off.
//
//	edge [flags]
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"herald/deploy/edge/internal/gateway"
	"herald/deploy/edge/internal/jwtauth"
	"herald/deploy/edge/internal/policy"
	"herald/shared/bodyrate"
	"herald/shared/config"
	"herald/shared/httpserver"
	"herald/shared/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "edge:", err)
		os.Exit(1)
	}
}

type settings struct {
	Listen      string
	HTTPAddr    string
	Upstream    string
	AuthnPath   string
	AuthzPath   string
	JWKS        string
	JWKSRefresh time.Duration
	LogLevel    string
	Grace       time.Duration
	Body        bodyrate.Rule
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var cfg settings
	set := config.New("edge", getenv)
	set.String(&cfg.Listen, "listen", "HERALD_EDGE_LISTEN", ":8000", "address partners and recipients reach")
	set.String(&cfg.HTTPAddr, "http-addr", "HERALD_HTTP_ADDR", ":9000", "address for health and metrics")
	set.String(&cfg.Upstream, "upstream", "HERALD_EDGE_UPSTREAM", "http://127.0.0.1:8080", "base URL of ingest")
	set.String(&cfg.AuthnPath, "request-authentication", "HERALD_EDGE_REQUEST_AUTHENTICATION", "deploy/k8s/components/istio/request-authentication.yaml", "the Istio RequestAuthentication to enforce")
	set.String(&cfg.AuthzPath, "authorization-policy", "HERALD_EDGE_AUTHORIZATION_POLICY", "deploy/k8s/components/istio/authorization-policy.yaml", "the Istio AuthorizationPolicy to enforce")
	set.String(&cfg.JWKS, "jwks", "HERALD_EDGE_JWKS", "", "JWKS file or URL for every issuer, instead of the policy's jwksUri (locally the real issuer is out of reach)")
	set.Duration(&cfg.JWKSRefresh, "jwks-refresh", "HERALD_EDGE_JWKS_REFRESH", 5*time.Minute, "how often key sets are reloaded (also at most this often on an unknown key id)")
	set.String(&cfg.LogLevel, "log-level", "HERALD_LOG_LEVEL", "info", "debug, info, warn or error")
	set.Duration(&cfg.Grace, "shutdown-grace", "HERALD_SHUTDOWN_GRACE", 10*time.Second, "how long a shutdown waits for requests in flight")
	set.Float(&cfg.Body.BytesPerSecond, "body-min-rate", "HERALD_BODY_MIN_RATE", 1024, "slowest a request body may arrive, in bytes a second after -body-grace (0: no minimum)")
	set.Duration(&cfg.Body.Grace, "body-grace", "HERALD_BODY_GRACE", 10*time.Second, "how long a request body may take before -body-min-rate applies")
	if err := set.Parse(args); err != nil {
		return err
	}
	upstream, err := url.Parse(cfg.Upstream)
	if err != nil || (upstream.Scheme != "http" && upstream.Scheme != "https") || upstream.Host == "" {
		return errors.New("-upstream must be an absolute http(s) URL")
	}
	if cfg.JWKSRefresh < time.Second {
		return errors.New("-jwks-refresh must be at least 1s")
	}
	if cfg.Body.BytesPerSecond < 0 || cfg.Body.Grace < time.Second {
		return errors.New("-body-min-rate must not be negative and -body-grace must be at least 1s")
	}
	log, err := telemetry.NewLogger(stdout, "edge", cfg.LogLevel)
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "starting", "config", set.LogValue())
	authn, authz, err := policy.Load(cfg.AuthnPath, cfg.AuthzPath)
	if err != nil {
		return err
	}
	rules := make([]jwtauth.Rule, 0, len(authn.Spec.JWTRules))
	var sets []*jwtauth.KeySet
	for _, r := range authn.Spec.JWTRules {
		source := cfg.JWKS
		if source == "" {
			source = r.JWKSURI
		}
		if source == "" {
			return fmt.Errorf("issuer %s: no jwksUri in the policy and no -jwks", r.Issuer)
		}
		keys, err := jwtauth.NewKeySet(ctx, source, min(cfg.JWKSRefresh, 10*time.Second))
		if err != nil {
			return err
		}
		sets = append(sets, keys)
		rules = append(rules, jwtauth.Rule{Issuer: r.Issuer, Audiences: r.Audiences, Keys: keys})
	}
	reg := telemetry.NewRegistry()
	gw := gateway.New(gateway.Config{Upstream: upstream, Verifier: jwtauth.NewVerifier(rules, time.Now),
		Authn: authn, Authz: authz, Log: log, Reg: reg, Body: cfg.Body})
	admin, err := httpserver.Listen(httpserver.Config{Addr: cfg.HTTPAddr, Registry: reg, Log: log,
		Ready: map[string]httpserver.Check{"jwks": func(context.Context) error {
			for _, s := range sets {
				if err := s.Err(); err != nil {
					return err
				}
			}
			return nil
		}}})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.InfoContext(ctx, "edge listening", "addr", ln.Addr().String(), "upstream", upstream.String())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Serve(gctx, cfg.Grace) })
	g.Go(func() error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case <-gctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), cfg.Grace)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	g.Go(func() error {
		t := time.NewTicker(cfg.JWKSRefresh)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				for _, s := range sets {
					if err := s.Reload(gctx); err != nil {
						log.WarnContext(gctx, "reload JWKS, keeping the old keys", "error", err)
					}
				}
			}
		}
	})
	return g.Wait()
}

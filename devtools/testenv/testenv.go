// Package testenv gives integration tests the real PostgreSQL and Pub/Sub
// emulator to run against. `make test` starts one of each for the whole run
// and names them in HERALD_TEST_DATABASE_URL and PUBSUB_EMULATOR_HOST; a
// package tested on its own (`go test ./x`) starts its own on first use. A
// test never skips for want of them: if they cannot be started, it fails.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/devtools/devpg"
	"herald/devtools/devpubsub"
	"herald/shared/messaging"
	"herald/shared/pgdb"
	"herald/shared/telemetry"
)

// Environment variables through which `make test` shares its servers.
const (
	EnvDatabaseURL = "HERALD_TEST_DATABASE_URL"
	EnvPubsubHost  = "PUBSUB_EMULATOR_HOST"
)

// The servers a test binary started itself, stopped by Main.
var (
	mu      sync.Mutex
	cluster *devpg.Cluster
	pubsub  *devpubsub.Server
)

// Main runs the package's tests and stops whatever servers they started.
// Packages that use this package call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	if cluster != nil {
		_ = cluster.Stop()
	}
	if pubsub != nil {
		_ = pubsub.Stop()
	}
	mu.Unlock()
	os.Exit(code)
}

// AdminURL returns the URL of a database on the test cluster from which new
// databases can be created.
func AdminURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		return u
	}
	mu.Lock()
	defer mu.Unlock()
	if cluster == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c, err := devpg.Start(ctx, devpg.Options{})
		if err != nil {
			t.Fatalf("PostgreSQL is needed and could not be started (set %s to use a running one): %v", EnvDatabaseURL, err)
		}
		cluster = c
	}
	return cluster.URL("postgres")
}

// DatabaseURL creates a new, migrated database for the test and returns its
// URL. The database is a copy of a template that was migrated once for the
// cluster and schema, which takes a fraction of the time that migrating
// every test's database did.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	admin := AdminURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmpl, err := templateDB(ctx, t, admin)
	if err != nil {
		t.Fatalf("prepare the migrated template database: %v", err)
	}
	name := "test_" + randomHex(8)
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to test cluster: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+tmpl); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	return databaseURL(t, admin, name)
}

func databaseURL(t testing.TB, admin, name string) string {
	t.Helper()
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvDatabaseURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

// templates remembers, per cluster, the template database this process
// has checked or made.
var templates sync.Map

// templateDB returns the name of a database on the cluster holding the
// schema of the embedded migrations, making it if no test binary has yet.
// Test binaries run side by side on one cluster, so the one that makes it
// holds an advisory lock while it does, migrates under a temporary name and
// renames the database only once it is complete: another binary either
// waits for the lock or finds the finished template.
func templateDB(ctx context.Context, t testing.TB, admin string) (string, error) {
	if name, ok := templates.Load(admin); ok {
		return name.(string), nil
	}
	digest, err := pgdb.SchemaDigest()
	if err != nil {
		return "", err
	}
	name := "herald_template_" + digest[:16]
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to test cluster: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", name); err != nil {
		return "", fmt.Errorf("lock the template: %w", err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtext($1))", name)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look for the template: %w", err)
	}
	if !exists {
		// A binary killed while migrating leaves the temporary copy behind.
		building := name + "_building"
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+building); err != nil {
			return "", fmt.Errorf("drop an unfinished template: %w", err)
		}
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+building); err != nil {
			return "", fmt.Errorf("create the template: %w", err)
		}
		if err := migrate(ctx, t, databaseURL(t, admin, building)); err != nil {
			return "", err
		}
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+building+" RENAME TO "+name); err != nil {
			return "", fmt.Errorf("name the template: %w", err)
		}
	}
	templates.Store(admin, name)
	return name, nil
}

// migrate applies the embedded migrations to the database at u and closes
// every connection to it, since PostgreSQL copies a template only while no
// one is connected.
func migrate(ctx context.Context, t testing.TB, u string) error {
	pool, err := pgdb.Connect(ctx, u, 2)
	if err != nil {
		return fmt.Errorf("connect to the template: %w", err)
	}
	defer pool.Close()
	log, _ := telemetry.NewLogger(testWriter{t}, "test", "warn")
	if err := pgdb.Migrate(ctx, pool, log); err != nil {
		return fmt.Errorf("migrate the template: %w", err)
	}
	return nil
}

// DB returns a pool on a new, migrated database, closed when the test ends.
func DB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgdb.Connect(context.Background(), DatabaseURL(t), 16)
	if err != nil {
		t.Fatalf("connect to test database: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// PubsubHost returns the host:port of the Pub/Sub emulator.
func PubsubHost(t testing.TB) string {
	t.Helper()
	if h := os.Getenv(EnvPubsubHost); h != "" {
		return h
	}
	mu.Lock()
	defer mu.Unlock()
	if pubsub == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		s, err := devpubsub.Start(ctx, devpubsub.Options{RequireEmulator: os.Getenv("CI") == "true"})
		if err != nil {
			t.Fatalf("the Pub/Sub emulator is needed and could not be started (set %s to use a running one): %v", EnvPubsubHost, err)
		}
		pubsub = s
	}
	return pubsub.Host()
}

// Pubsub returns the emulator with a project of the test's own, so tests
// sharing the emulator never see each other's topics.
func Pubsub(t testing.TB) messaging.Config {
	t.Helper()
	return messaging.Config{Project: "test-" + randomHex(6), EmulatorHost: PubsubHost(t)}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testWriter sends log output to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// Must fails the test on err.
func Must(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

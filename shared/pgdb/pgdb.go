// Package pgdb is Herald's access to PostgreSQL: the connection pool, the
// transaction helper and the embedded schema migrations. Services keep their
// queries in .sql files beside the code that runs them and embed each one
// into a string, so a missing file fails the build, not a send.
package pgdb

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Connect opens a pool to url with at most maxConns connections and checks
// that the database answers.
func Connect(ctx context.Context, url string, maxConns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping database: %w", err)
	}
	return pool, nil
}

// InTx runs fn in a transaction, committing when fn returns nil and rolling
// back otherwise.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// IsUniqueViolation reports whether err is PostgreSQL's unique_violation.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate brings the schema up to date. Concurrent callers (every replica
// of every service may call it at start) serialize on a PostgreSQL advisory
// lock, so exactly one applies each migration.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("open migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("create migration lock: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker), goose.WithTableName("herald_schema_migrations"))
	if err != nil {
		return fmt.Errorf("prepare migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		log.InfoContext(ctx, "migration applied", "version", r.Source.Version, "file", path.Base(r.Source.Path), "duration", r.Duration)
	}
	return nil
}

// SchemaDigest names the schema the embedded migrations build: a hash of
// their names and contents, so a database made from one set of migrations is
// never taken for another's.
func SchemaDigest() (string, error) {
	entries, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, name := range entries {
		b, err := migrations.ReadFile(name)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SchemaCurrent reports an error unless every embedded migration is applied;
// services use it as a readiness check so they serve only on a schema they
// understand.
func SchemaCurrent(ctx context.Context, pool *pgxpool.Pool) error {
	entries, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	var applied int
	err = pool.QueryRow(ctx, `SELECT count(DISTINCT version_id) FROM herald_schema_migrations WHERE is_applied AND version_id > 0`).Scan(&applied)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if applied < len(entries) {
		return fmt.Errorf("schema has %d of %d migrations: run the migrate command", applied, len(entries))
	}
	return nil
}

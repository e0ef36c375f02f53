// Package postgres is the store.Store adapter for PostgreSQL (pgx), the
// shared state of many node replicas (DESIGN §2). It holds the same data as
// the SQLite adapter with the same semantics, and is made safe for
// concurrent writers in several processes by PostgreSQL's locks:
//
//   - events: ApplyRunChange locks the run row (SELECT ... FOR UPDATE) and
//     advances runs.last_sequence, so sequences are gapless per run;
//   - idempotent CreateRun: the idempotency key is claimed with INSERT ...
//     ON CONFLICT DO NOTHING, losers read the winner's row back;
//   - budgets: one budget_windows row per (tenant, window) is locked by every
//     reservation; KV quotas: the tenant's kv_usage row is locked by every
//     put and delete;
//   - audit: every append locks the single audit_head row, so the hash chain
//     is one chain whatever the number of writers;
//   - migrations: applied under a session advisory lock, so processes
//     starting together migrate once.
//
// Every query leads with tenant_id (CONTRACT §8). Transactions run at READ
// COMMITTED; one that fails with a serialization failure or deadlock is
// retried from scratch. The run queue adapter (internal/queue/postgres) works
// on the queue_entries table through DB.Tx and DB.Pool.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/storeutil"
)

var _ store.Store = (*DB)(nil)

//go:embed migrations/*.sql
var migrationFS embed.FS

// defaultMaxConns is the pool size when the URL sets no pool_max_conns.
const defaultMaxConns = 16

// maxTxAttempts bounds the retries of a transaction that hit a
// serialization failure or a deadlock.
const maxTxAttempts = 4

// DB is the PostgreSQL store. Create it with Open.
type DB struct {
	pool *pgxpool.Pool

	// Now is the clock (default time.Now). Tests may replace it before use.
	Now func() time.Time
}

// Open connects to the database a postgres:// or postgresql:// URL names and
// applies pending migrations. The URL takes libpq's and pgx's parameters:
// sslmode, search_path (the schema the tables live in; the first one must
// exist), pool_max_conns (default 16), application_name and so on. A
// malformed URL is an invalid_request naming store_url; an unreachable
// server is dependency_unavailable.
func Open(ctx context.Context, url string) (*DB, error) {
	if !IsURL(url) {
		return nil, errs.Field("store_url", "%q is not a PostgreSQL URL (want postgres://user@host:port/db)", redact(url))
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, errs.Field("store_url", "cannot parse PostgreSQL URL: %v", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, errs.Field("store_url", "invalid PostgreSQL configuration: %v", err)
	}
	db := &DB{pool: pool, Now: time.Now}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// IsURL reports whether url names a PostgreSQL database (scheme postgres://
// or postgresql://), for a caller choosing the store adapter by URL.
func IsURL(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// redact hides a password in a URL shown in an error message.
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return url
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return url
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// Pool is the connection pool, for the queue adapter and for tests.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Tx runs fn in one READ COMMITTED transaction and commits it when fn
// returns nil. A transaction that fails with a serialization failure or a
// deadlock is rolled back and fn runs again (up to 4 times in all), so fn
// must set its results afresh on every call. Errors are mapped by MapError.
func (db *DB) Tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, db.pool, fn)
		if err != nil && attempt < maxTxAttempts && retryable(err) {
			continue
		}
		return mapErr(err, "database")
	}
}

// retryable reports errors after which the whole transaction may be retried.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return false
}

// Ping checks that the server answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "store unreachable")
	}
	return nil
}

// Close closes every connection of the pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

func (db *DB) now() time.Time { return storeutil.UTC(db.Now()) }

// migrationLockKey is the first half of the advisory lock key taken while
// migrating; the second is a hash of the schema migrated, so processes
// migrating different schemas of one database do not wait for each other.
const migrationLockKey = 0x61676f73 // "agos"

// migrate applies the embedded migrations not yet recorded in
// schema_migrations, each in its own transaction, while holding a session
// advisory lock on one connection: a second process migrating the same
// schema at the same time waits, then finds nothing left to do.
func (db *DB) migrate(ctx context.Context) error {
	migs, err := storeutil.Migrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return mapErr(err, "database")
	}
	defer conn.Release()
	var schema *string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return mapErr(err, "database")
	}
	if schema == nil {
		return errs.Field("store_url", "no schema of the search_path exists: create it first")
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, migrationLockKey, *schema); err != nil {
		return mapErr(err, "migration lock")
	}
	defer func() {
		// A failed unlock (broken connection) releases the lock anyway
		// when the session ends; the connection is then discarded.
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1, hashtext($2))`,
			migrationLockKey, *schema); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer NOT NULL PRIMARY KEY,
		name text NOT NULL,
		applied_at timestamptz NOT NULL)`); err != nil {
		return mapErr(err, "schema_migrations")
	}
	for _, m := range migs {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.Version, m.Name, db.now())
			return err
		})
		if err != nil {
			return mapErr(err, "migration "+m.Name)
		}
	}
	return nil
}

// SchemaVersion returns the highest applied migration version.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v *int
	if err := db.pool.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, mapErr(err, "schema_migrations")
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// MapError turns a pgx or PostgreSQL error into an errs error. It is the
// only place that knows PostgreSQL's error codes; the queue adapter uses it
// too. what names the object for messages.
func MapError(err error, what string) error { return mapErr(err, what) }

func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return errs.E(errs.NotFound, "%s not found", what)
	}
	if e := errs.FromContext(err, "store operation"); e != nil {
		return e
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505": // unique_violation
			return errs.Wrap(errs.Conflict, err, "%s already exists", what)
		case pe.Code == "23503": // foreign_key_violation
			return errs.Wrap(errs.NotFound, err, "%s refers to a missing object", what)
		case strings.HasPrefix(pe.Code, "23"): // other integrity constraints
			return errs.Wrap(errs.Conflict, err, "%s violates a constraint", what)
		case strings.HasPrefix(pe.Code, "22"): // data exception: bad JSON, NUL bytes, invalid UTF-8, out of range
			return errs.Wrap(errs.InvalidRequest, err, "%s has an invalid value: %s", what, pe.Message)
		case pe.Code == "40001", pe.Code == "40P01", pe.Code == "55P03": // serialization, deadlock, lock not available
			return errs.Wrap(errs.DependencyUnavailable, err, "store is busy")
		case pe.Code == "57014": // query_canceled (statement_timeout)
			return errs.Wrap(errs.Timeout, err, "store operation timed out")
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "53"), strings.HasPrefix(pe.Code, "57"),
			strings.HasPrefix(pe.Code, "58"), pe.Code == "25006": // connection, resources, shutdown, system, read-only
			return errs.Wrap(errs.DependencyUnavailable, err, "store unavailable")
		}
		return errs.Wrap(errs.Internal, err, "store error on %s", what)
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) || errors.Is(err, pgx.ErrTxClosed) {
		return errs.Wrap(errs.DependencyUnavailable, err, "store unavailable")
	}
	return errs.Wrap(errs.Internal, err, "store error on %s", what)
}

// ts encodes a nullable time column: NULL for the zero time.
func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return storeutil.UTC(t)
}

func tsPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return ts(*t)
}

// fromTS decodes a nullable time column (NULL is the zero time).
func fromTS(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func fromTSPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}

func itoa(i int) string { return strconv.Itoa(i) }

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
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

var _ store.Store = (*DB)(nil)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Options bound the pool, so that a database that hangs or is gone fails
// callers with dependency_unavailable rather than holding them. Zero
// fields take the defaults (config.Config's AGENTOS_POSTGRES_* settings).
type Options struct {
	// MaxConns is the pool's size (default 16); a URL's pool_max_conns
	// wins.
	MaxConns int
	// StatementTimeout is the server-side statement_timeout of every
	// session (default 10s); a statement cut off by it is
	// dependency_unavailable. A URL's statement_timeout parameter wins.
	// Migrations run without it.
	StatementTimeout time.Duration
	// ConnectTimeout bounds a connection attempt and a transaction's
	// wait for a free pooled connection (default 5s). Added to
	// StatementTimeout it is every statement's client-side bound (see
	// BoundedPool).
	ConnectTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.MaxConns <= 0 {
		o.MaxConns = 16
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = 10 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	return o
}

// maxTxAttempts bounds the retries of a transaction that hit a
// serialization failure or a deadlock.
const maxTxAttempts = 4

// DB is the PostgreSQL store. Create it with Open.
type DB struct {
	pool *BoundedPool
	opts Options
	// Writes are the methods written once for both SQL adapters.
	sqlstore.Writes

	// Now is the clock (default time.Now). Tests may replace it before use.
	Now func() time.Time
}

// Open is OpenWith with the default Options.
func Open(ctx context.Context, url string) (*DB, error) {
	return OpenWith(ctx, url, Options{})
}

// OpenWith connects to the database a postgres:// or postgresql:// URL
// names and applies pending migrations. The URL takes libpq's and pgx's
// parameters: sslmode, search_path (the schema the tables live in; the
// first one must exist), pool_max_conns (default o.MaxConns),
// statement_timeout (default o.StatementTimeout), connect_timeout (default
// o.ConnectTimeout), application_name and so on. A malformed URL is an
// invalid_request naming store_url; an unreachable server is
// dependency_unavailable.
func OpenWith(ctx context.Context, url string, o Options) (*DB, error) {
	if !IsURL(url) {
		return nil, errs.Field("store_url", "%q is not a PostgreSQL URL (want postgres://user@host:port/db)", redact(url))
	}
	o = o.withDefaults()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, errs.Field("store_url", "cannot parse PostgreSQL URL: %v", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = int32(min(o.MaxConns, 1<<20))
	}
	if _, set := cfg.ConnConfig.RuntimeParams["statement_timeout"]; !set {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(o.StatementTimeout.Milliseconds(), 10)
	}
	if !strings.Contains(url, "connect_timeout") {
		cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, errs.Field("store_url", "invalid PostgreSQL configuration: %v", err)
	}
	db := &DB{pool: &BoundedPool{Pool: pool, bound: o.StatementTimeout + o.ConnectTimeout}, opts: o, Now: time.Now}
	db.Writes = sqlstore.NewWrites(db.begin, db.now)
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

// Pool is the connection pool (its statements bounded, see BoundedPool),
// for the queue adapter and for tests.
func (db *DB) Pool() *BoundedPool { return db.pool }

// Tx runs fn in one READ COMMITTED transaction and commits it when fn
// returns nil. A transaction that fails with a serialization failure or a
// deadlock is rolled back and fn runs again (up to 4 times in all), so fn
// must set its results afresh on every call. Errors are mapped by MapError.
// A transaction waits at most Options.ConnectTimeout for a connection of
// the pool (all busy on a database that hangs: dependency_unavailable).
func (db *DB) Tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		conn, err := db.acquire(ctx)
		if err != nil {
			return err
		}
		// Each statement of fn is bounded (boundedTx); BEGIN and COMMIT
		// share a looser bound on the whole transaction.
		bound := db.pool.bound
		tctx, cancel := context.WithTimeout(ctx, 3*bound)
		err = pgx.BeginFunc(tctx, conn, func(tx pgx.Tx) error { return fn(boundedTx{Tx: tx, bound: bound}) })
		err = outOfBound(ctx, tctx, 3*bound, err)
		cancel()
		conn.Release()
		if err != nil && attempt < maxTxAttempts && retryable(err) {
			continue
		}
		return mapErr(err, "database")
	}
}

// acquire takes a connection from the pool, waiting at most
// Options.ConnectTimeout (within ctx).
func (db *DB) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	actx, cancel := context.WithTimeout(ctx, db.opts.ConnectTimeout)
	defer cancel()
	conn, err := db.pool.Acquire(actx)
	if err == nil {
		return conn, nil
	}
	if ctx.Err() == nil && actx.Err() != nil {
		// Our bound, not the caller's: the database is slow or gone.
		return nil, errs.Wrap(errs.DependencyUnavailable, err,
			"no store connection within %s (pool of %d, all busy or the server does not answer)",
			db.opts.ConnectTimeout, db.pool.Config().MaxConns)
	}
	return nil, mapErr(err, "database")
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

func (db *DB) now() time.Time { return sqlstore.UTC(db.Now()) }

// migrationLockKey is the first half of the advisory lock key taken while
// migrating; the second is a hash of the schema migrated, so processes
// migrating different schemas of one database do not wait for each other.
const migrationLockKey = 0x61676f73 // "agos"

// migrate applies the embedded migrations not yet recorded in
// schema_migrations, each in its own transaction, while holding a session
// advisory lock on one connection: a second process migrating the same
// schema at the same time waits, then finds nothing left to do.
func (db *DB) migrate(ctx context.Context) error {
	migs, err := sqlstore.Migrations(migrationFS, "migrations")
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
	// Waiting for another process's migrations, and a migration itself,
	// may take longer than a statement may; the session's default comes
	// back (RESET) before the connection returns to the pool.
	if _, err := conn.Exec(ctx, `SET statement_timeout = 0`); err != nil {
		return mapErr(err, "database")
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `RESET statement_timeout`); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
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
	return sqlstore.MapError(err, what, pgx.ErrNoRows, mapPgErr)
}

// mapPgErr maps PostgreSQL's error codes and pgx's connection errors.
func mapPgErr(err error, what string) error {
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
		case pe.Code == "57014": // query_canceled: statement_timeout (a caller's cancel is its context error, mapped before)
			return errs.Wrap(errs.DependencyUnavailable, err, "the store did not finish %s within the statement timeout", what)
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
	return sqlstore.UTC(t)
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

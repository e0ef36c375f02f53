// Package sqlite is the embedded store.Store adapter: one SQLite file (pure Go
// driver modernc.org/sqlite, WAL mode) holding tenants, tokens, agents, runs,
// steps, events, idempotency keys, the run queue table, audit chain, KV,
// budgets, usage and federation state.
//
// SQLite allows one writer at a time. DB keeps two handles: a single
// connection for writes, whose transactions begin IMMEDIATE (they take the
// write lock up front, so concurrent writers queue instead of failing with
// SQLITE_BUSY), and a pool of read-only connections. Every query leads with
// tenant_id (CONTRACT §8).
//
// The queue adapter (internal/queue/sqlite) works on the queue_entries table
// of the same database through DB.SQL and DB.WriteTx.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/storeutil"
)

var _ store.Store = (*DB)(nil)

//go:embed migrations/*.sql
var migrationFS embed.FS

// busyTimeoutMs is how long a connection waits for a lock held by another
// connection or process before giving up with SQLITE_BUSY.
const busyTimeoutMs = 10000

// DB is the SQLite store. Create it with Open or OpenURL.
type DB struct {
	w    *sql.DB // one connection; transactions BEGIN IMMEDIATE
	r    *sql.DB // read-only pool (== w for in-memory databases)
	path string

	stmts stmtCache
	reads readStmts

	writes     chan *writeReq // to the writer goroutine (group commit)
	writerDone chan struct{}
	closeMu    sync.RWMutex
	closed     bool

	// Now is the clock (default time.Now). Tests may replace it before use.
	Now func() time.Time
}

// Open opens (creating if needed, with its parent directories) the SQLite
// database at path and applies pending migrations. path ":memory:" opens a
// private in-memory database (one connection, for tests).
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errs.Field("store_url", "empty database path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, errs.Field("store_url", "database path %q must not contain '?' or '#'", path)
	}
	db := &DB{path: path, Now: time.Now}
	if path == ":memory:" {
		w, err := sql.Open("sqlite", ":memory:?_pragma=foreign_keys(1)&_txlock=immediate")
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "open in-memory database")
		}
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		w.SetConnMaxIdleTime(0)
		db.w, db.r = w, w
	} else {
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, errs.Wrap(errs.Internal, err, "create database directory %s", dir)
			}
		}
		common := "_pragma=busy_timeout(" + strconv.Itoa(busyTimeoutMs) + ")&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)" +
			// Savepoint sub-journals (group commit) and temp b-trees stay in memory.
			"&_pragma=temp_store(MEMORY)&_pragma=cache_size(-65536)"
		w, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "open database %s", path)
		}
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		w.SetConnMaxIdleTime(0)
		db.w = w
		// The writer creates the file and switches it to WAL before any
		// reader connects.
		if err := w.PingContext(ctx); err != nil {
			_ = w.Close()
			return nil, mapErr(err, "database")
		}
		r, err := sql.Open("sqlite", path+"?"+common+"&_query_only=1")
		if err != nil {
			_ = w.Close()
			return nil, errs.Wrap(errs.Internal, err, "open database %s", path)
		}
		r.SetMaxOpenConns(8)
		r.SetMaxIdleConns(8)
		db.r = r
	}
	db.writes = make(chan *writeReq, maxBatch)
	db.writerDone = make(chan struct{})
	go db.writer()
	if err := db.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// OpenURL opens the database a store URL names: sqlite:///abs/path,
// sqlite://relative/path, sqlite::memory:, file:/abs/path, file:relative/path
// or file::memory:. Any other scheme (postgres:// included, not built yet) is
// an invalid_request error naming store_url.
func OpenURL(ctx context.Context, url string) (*DB, error) {
	path, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	return Open(ctx, path)
}

// ParseURL returns the file path (or ":memory:") a SQLite store URL names.
// See OpenURL for the accepted forms.
func ParseURL(url string) (string, error) {
	var rest string
	switch {
	case strings.HasPrefix(url, "sqlite://"):
		rest = strings.TrimPrefix(url, "sqlite://")
	case strings.HasPrefix(url, "sqlite:"):
		rest = strings.TrimPrefix(url, "sqlite:")
	case strings.HasPrefix(url, "file://"):
		rest = strings.TrimPrefix(url, "file://")
	case strings.HasPrefix(url, "file:"):
		rest = strings.TrimPrefix(url, "file:")
	default:
		scheme, _, ok := strings.Cut(url, "://")
		if !ok || scheme == "" {
			return "", errs.Field("store_url", "%q is not a store URL (want sqlite:///path/to/file.db or sqlite::memory:)", url)
		}
		return "", errs.Field("store_url", "unsupported store URL scheme %q (this node supports sqlite:// and file:)", scheme)
	}
	if rest == "" {
		return "", errs.Field("store_url", "%q names no database file", url)
	}
	if strings.ContainsAny(rest, "?#") {
		return "", errs.Field("store_url", "%q: query parameters and fragments are not supported", url)
	}
	if strings.ContainsRune(rest, 0) {
		return "", errs.Field("store_url", "database path contains a NUL byte")
	}
	if rest == ":memory:" {
		return ":memory:", nil
	}
	return rest, nil
}

// Path is the database file path (":memory:" for an in-memory database).
func (db *DB) Path() string { return db.path }

// SQL returns the write handle: a single connection whose transactions
// begin IMMEDIATE. The queue adapter runs its statements on it. Never use it
// while holding a transaction from WriteTx (it would wait forever).
func (db *DB) SQL() *sql.DB { return db.w }

// ReadSQL returns the read-only pool (the write handle for an in-memory
// database). Reads that scan much, like the queue's depth, belong here:
// on the write connection they would hold up every write meanwhile.
func (db *DB) ReadSQL() *sql.DB { return db.r }

// Tx is a write transaction. Its Exec/Query methods reuse statements
// prepared on the write connection (see stmtCache), so hot statements are
// parsed once per process instead of once per call.
type Tx struct {
	*sql.Tx
	db *DB
}

// ExecContext executes query in the transaction, prepared if seen before.
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	// A caller's cancellation must not interrupt a statement: SQLite would
	// roll back the whole shared transaction (group commit), failing every
	// other call in the batch. The writer checks each caller's context
	// before running its call instead.
	ctx = context.WithoutCancel(ctx)
	if st := tx.db.stmts.get(query); st != nil {
		return tx.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.Tx.ExecContext(ctx, query, args...)
}

// QueryRowContext queries one row in the transaction, prepared if seen before.
func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	// A caller's cancellation must not interrupt a statement: SQLite would
	// roll back the whole shared transaction (group commit), failing every
	// other call in the batch. The writer checks each caller's context
	// before running its call instead.
	ctx = context.WithoutCancel(ctx)
	if st := tx.db.stmts.get(query); st != nil {
		return tx.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.Tx.QueryRowContext(ctx, query, args...)
}

// QueryContext queries rows in the transaction, prepared if seen before.
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	// A caller's cancellation must not interrupt a statement: SQLite would
	// roll back the whole shared transaction (group commit), failing every
	// other call in the batch. The writer checks each caller's context
	// before running its call instead.
	ctx = context.WithoutCancel(ctx)
	if st := tx.db.stmts.get(query); st != nil {
		return tx.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.Tx.QueryContext(ctx, query, args...)
}

// stmtCache holds statements prepared on the single write connection. A
// statement cannot be prepared on that connection while a transaction holds
// it, so a query missed inside a transaction is recorded as pending and
// prepared at the start of a later WriteTx, before it takes the connection.
type stmtCache struct {
	mu       sync.Mutex
	prepared map[string]*sql.Stmt
	pending  map[string]bool
}

const maxCachedStmts = 256

func (c *stmtCache) get(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.prepared[q]; st != nil {
		return st
	}
	if len(c.prepared)+len(c.pending) < maxCachedStmts {
		if c.pending == nil {
			c.pending = map[string]bool{}
		}
		c.pending[q] = true
	}
	return nil
}

// prepare prepares pending statements on w. It must not be called while
// holding a transaction on w.
func (c *stmtCache) prepare(ctx context.Context, w *sql.DB) {
	c.mu.Lock()
	var queued []string
	for q := range c.pending {
		queued = append(queued, q)
	}
	c.pending = nil
	c.mu.Unlock()
	for _, q := range queued {
		st, err := w.PrepareContext(ctx, q)
		if err != nil {
			continue // the statement then simply runs unprepared
		}
		c.mu.Lock()
		if c.prepared == nil {
			c.prepared = map[string]*sql.Stmt{}
		}
		if c.prepared[q] == nil {
			c.prepared[q] = st
			st = nil
		}
		c.mu.Unlock()
		if st != nil {
			_ = st.Close()
		}
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.prepared {
		_ = st.Close()
	}
	c.prepared = nil
}

// WriteTx runs fn in a write transaction and returns once it is committed
// (or fn's error). Errors are mapped to errs codes. fn must use only tx (any
// other use of the store inside fn would wait forever for the connection).
//
// Group commit: concurrent WriteTx calls are combined by one writer
// goroutine into a shared transaction, so N concurrent writers pay for one
// BEGIN IMMEDIATE/COMMIT instead of N; if one fn fails, the batch is run
// again with each fn in its own SAVEPOINT, so only that fn's writes are
// rolled back (see commitBatch). A lone writer is not delayed: a batch is
// whatever is waiting when the previous commit finishes.
//
// ctx is checked before fn runs, not while it runs or commits: a caller
// gets a definite answer (committed or not), never "gave up waiting".
func (db *DB) WriteTx(ctx context.Context, fn func(tx *Tx) error) error {
	if err := ctx.Err(); err != nil {
		return mapErr(err, "database")
	}
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return errs.E(errs.DependencyUnavailable, "store is closed")
	}
	db.writes <- req
	db.closeMu.RUnlock()
	return <-req.done
}

// writeReq is one WriteTx call waiting for the writer goroutine.
type writeReq struct {
	ctx  context.Context
	fn   func(tx *Tx) error
	done chan error
}

// maxBatch bounds how many WriteTx calls share one transaction.
const maxBatch = 256

// writer runs every write transaction of the database (see WriteTx).
func (db *DB) writer() {
	defer close(db.writerDone)
	batch := make([]*writeReq, 0, maxBatch)
	for req := range db.writes {
		batch = append(batch[:0], req)
	drain:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-db.writes:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		db.commitBatch(batch)
	}
}

// commitBatch runs a batch in one transaction. It first runs every call
// back to back; only if one of them fails is the transaction rolled back
// and the batch run again with each call inside its own SAVEPOINT, so the
// failing call's writes are undone alone. (Calls are pure functions of
// their inputs and the database, so running one twice is harmless; a
// failing call is the rare case, a savepoint per call is not free.) If the
// transaction cannot begin or commit, every call of the batch gets that
// error.
func (db *DB) commitBatch(batch []*writeReq) {
	ctx := context.Background()
	db.stmts.prepare(ctx, db.w)
	results, ok, err := db.runBatch(ctx, batch, false)
	if err == nil && !ok && len(batch) > 1 {
		results, _, err = db.runBatch(ctx, batch, true)
	}
	for i, r := range batch {
		switch {
		case err != nil:
			r.done <- mapErr(err, "database")
		case results[i] != nil:
			r.done <- mapErr(results[i], "database")
		default:
			r.done <- nil
		}
	}
}

// runBatch runs the batch in one transaction. Without savepoints, the
// first failing call stops it: the transaction is rolled back and ok is
// false. With savepoints, a failing call rolls back only its own writes and
// the rest are committed. err is a transaction-level failure.
func (db *DB) runBatch(ctx context.Context, batch []*writeReq, savepoints bool) (results []error, ok bool, err error) {
	results = make([]error, len(batch))
	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, err
	}
	tx := &Tx{Tx: sqlTx, db: db}
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if !savepoints {
			if results[i] = r.fn(tx); results[i] != nil {
				_ = sqlTx.Rollback()
				return results, false, nil
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
			_ = sqlTx.Rollback()
			return nil, false, err
		}
		if results[i] = r.fn(tx); results[i] != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO w"); err != nil {
				_ = sqlTx.Rollback()
				return nil, false, errors.Join(results[i], err)
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE w"); err != nil {
			_ = sqlTx.Rollback()
			return nil, false, err
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return nil, false, err
	}
	return results, true, nil
}

// readStmts caches statements prepared on the read pool (database/sql
// prepares each on a connection the first time it runs there), so hot reads
// are parsed once instead of on every call.
type readStmts struct {
	m sync.Map // query → *sql.Stmt
}

func (db *DB) readStmt(ctx context.Context, q string) *sql.Stmt {
	if st, ok := db.reads.m.Load(q); ok {
		return st.(*sql.Stmt)
	}
	st, err := db.r.PrepareContext(ctx, q)
	if err != nil {
		return nil // the query then runs unprepared and reports its own error
	}
	if prev, loaded := db.reads.m.LoadOrStore(q, st); loaded {
		_ = st.Close()
		return prev.(*sql.Stmt)
	}
	return st
}

// queryRow runs a read query, prepared once per process.
func (db *DB) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := db.readStmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return db.r.QueryRowContext(ctx, q, args...)
}

// query runs a read query returning rows, prepared once per process.
func (db *DB) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := db.readStmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return db.r.QueryContext(ctx, q, args...)
}

// Ping checks both handles.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.w.PingContext(ctx); err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "store unreachable")
	}
	if err := db.r.PingContext(ctx); err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "store unreachable")
	}
	return nil
}

// Close closes the database.
func (db *DB) Close() error {
	db.closeMu.Lock()
	if db.closed {
		db.closeMu.Unlock()
		return nil
	}
	db.closed = true
	if db.writes != nil {
		close(db.writes)
		<-db.writerDone
	}
	db.closeMu.Unlock()
	db.stmts.close()
	db.reads.m.Range(func(_, st any) bool { _ = st.(*sql.Stmt).Close(); return true })
	var err error
	if db.r != nil && db.r != db.w {
		err = db.r.Close()
	}
	if db.w != nil {
		err = errors.Join(err, db.w.Close())
	}
	return err
}

func (db *DB) now() time.Time { return storeutil.UTC(db.Now()) }

// migrate applies the embedded migrations not yet recorded in
// schema_migrations, each in its own write transaction.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at INTEGER NOT NULL)`); err != nil {
		return mapErr(err, "schema_migrations")
	}
	migs, err := storeutil.Migrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	for _, m := range migs {
		err := db.WriteTx(ctx, func(tx *Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, db.now().UnixMicro())
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// SchemaVersion returns the highest applied migration version.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := db.queryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, mapErr(err, "schema_migrations")
	}
	return int(v.Int64), nil
}

// mapErr turns a driver error into an errs error; it is the only place that
// knows SQLite's error codes. what names the object for messages.
func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return errs.E(errs.NotFound, "%s not found", what)
	}
	if e := errs.FromContext(err, "store operation"); e != nil {
		return e
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return errs.Wrap(errs.Conflict, err, "%s already exists", what)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return errs.Wrap(errs.NotFound, err, "%s refers to a missing object", what)
		}
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CONSTRAINT:
			return errs.Wrap(errs.Conflict, err, "%s violates a constraint", what)
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return errs.Wrap(errs.DependencyUnavailable, err, "store is busy")
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY:
			return errs.Wrap(errs.DependencyUnavailable, err, "store unavailable")
		}
	}
	return errs.Wrap(errs.Internal, err, "store error on %s", what)
}

// MapError exposes the adapter's error mapping to the queue adapter.
func MapError(err error, what string) error { return mapErr(err, what) }

// micros encodes a time column: NULL for the zero time.
func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func microsPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return micros(*t)
}

func fromMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

func fromMicrosPtr(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.UnixMicro(v.Int64).UTC()
	return &t
}

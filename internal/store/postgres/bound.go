package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nexixai/agentos/internal/errs"
)

// The statement timeout is the server's: a server that is frozen with its
// connections open (a stopped process, a partition that drops packets)
// cannot enforce it, and a statement sent to it would wait for its
// caller's deadline, which most callers (requests, executors) do not set.
// So every statement also gets a client-side bound, a little longer than
// the statement timeout so that a server that answers at all cuts a slow
// statement off itself first: Options.StatementTimeout +
// Options.ConnectTimeout. A statement cut off by the bound (not by its
// caller's context) is dependency_unavailable; pgx closes its connection
// and the pool dials a fresh one for the next statement.

// BoundedPool is the connection pool whose Exec, Query and QueryRow carry
// the client-side bound; the embedded pool's other methods (Acquire,
// Ping, Config...) are pgx's.
type BoundedPool struct {
	*pgxpool.Pool
	bound time.Duration
}

// Exec is pgxpool's Exec, bounded.
func (p *BoundedPool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return boundedExec(ctx, p.bound, func(ctx context.Context) (pgconn.CommandTag, error) { return p.Pool.Exec(ctx, sql, args...) })
}

// Query is pgxpool's Query, bounded until the rows are closed.
func (p *BoundedPool) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return boundedQuery(ctx, p.bound, func(ctx context.Context) (pgx.Rows, error) { return p.Pool.Query(ctx, sql, args...) })
}

// QueryRow is pgxpool's QueryRow, bounded until the row is scanned.
func (p *BoundedPool) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return boundedQueryRow(ctx, p.bound, func(ctx context.Context) pgx.Row { return p.Pool.QueryRow(ctx, sql, args...) })
}

// boundedTx is a transaction whose statements carry the bound.
type boundedTx struct {
	pgx.Tx
	bound time.Duration
}

func (t boundedTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return boundedExec(ctx, t.bound, func(ctx context.Context) (pgconn.CommandTag, error) { return t.Tx.Exec(ctx, sql, args...) })
}

func (t boundedTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return boundedQuery(ctx, t.bound, func(ctx context.Context) (pgx.Rows, error) { return t.Tx.Query(ctx, sql, args...) })
}

func (t boundedTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return boundedQueryRow(ctx, t.bound, func(ctx context.Context) pgx.Row { return t.Tx.QueryRow(ctx, sql, args...) })
}

// outOfBound maps err to dependency_unavailable when the bound (bctx),
// not the caller (ctx), ended the statement.
func outOfBound(ctx, bctx context.Context, bound time.Duration, err error) error {
	if err != nil && ctx.Err() == nil && bctx.Err() != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "the store did not answer within %s", bound)
	}
	return err
}

func boundedExec(ctx context.Context, bound time.Duration, f func(context.Context) (pgconn.CommandTag, error)) (pgconn.CommandTag, error) {
	bctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	tag, err := f(bctx)
	return tag, outOfBound(ctx, bctx, bound, err)
}

func boundedQuery(ctx context.Context, bound time.Duration, f func(context.Context) (pgx.Rows, error)) (pgx.Rows, error) {
	bctx, cancel := context.WithTimeout(ctx, bound)
	rows, err := f(bctx)
	if err != nil {
		cancel()
		return nil, outOfBound(ctx, bctx, bound, err)
	}
	return &boundedRows{Rows: rows, ctx: ctx, bctx: bctx, cancel: cancel, bound: bound}, nil
}

func boundedQueryRow(ctx context.Context, bound time.Duration, f func(context.Context) pgx.Row) pgx.Row {
	bctx, cancel := context.WithTimeout(ctx, bound)
	return boundedRow{row: f(bctx), ctx: ctx, bctx: bctx, cancel: cancel, bound: bound}
}

// boundedRows releases the bound when closed.
type boundedRows struct {
	pgx.Rows
	ctx, bctx context.Context
	cancel    context.CancelFunc
	bound     time.Duration
}

func (r *boundedRows) Close() {
	r.Rows.Close()
	r.cancel()
}

func (r *boundedRows) Err() error { return outOfBound(r.ctx, r.bctx, r.bound, r.Rows.Err()) }

func (r *boundedRows) Scan(dest ...any) error {
	return outOfBound(r.ctx, r.bctx, r.bound, r.Rows.Scan(dest...))
}

// boundedRow releases the bound once scanned.
type boundedRow struct {
	row       pgx.Row
	ctx, bctx context.Context
	cancel    context.CancelFunc
	bound     time.Duration
}

func (r boundedRow) Scan(dest ...any) error {
	defer r.cancel()
	return outOfBound(r.ctx, r.bctx, r.bound, r.row.Scan(dest...))
}

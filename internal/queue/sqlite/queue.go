// Package sqlite is the embedded queue.Queue adapter: the run queue is
// the queue_entries table of the node's SQLite store (internal/store/sqlite),
// so store.CreateRun enqueues a run in the same transaction that admits it.
//
// Every operation is one write transaction (BEGIN IMMEDIATE on the store's
// single write connection), so concurrent leasers never take the same entry.
// Fairness: queue_tenants records, per tenant, a counter value of the last
// lease it got; Lease serves tenants with the lowest value (least recently
// served) first, one entry per tenant per round.
package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/queue"
	storesqlite "github.com/nexixai/agentos/internal/store/sqlite"
)

var _ queue.Queue = (*Queue)(nil)

// Queue is the SQLite run queue.
type Queue struct {
	db *storesqlite.DB

	// Now is the clock deciding lease expiry (default time.Now). Tests set
	// it to a fake clock before use.
	Now func() time.Time
}

// New returns the queue stored in db's queue_entries table.
func New(db *storesqlite.DB) *Queue {
	return &Queue{db: db, Now: time.Now}
}

func (q *Queue) now() time.Time { return q.Now().UTC().Truncate(time.Microsecond) }

// leasable is the condition on queue_entries for "not held by an unexpired lease".
const leasable = `(lease_expires_at IS NULL OR lease_expires_at <= ?)`

// Lease takes up to p.Max entries, in rounds: each round gives at most one
// entry to each tenant that has leasable work and is under its limit,
// least recently served tenants first; within a tenant, higher priority then
// older first. TenantLimit is called at most once per tenant per call.
func (q *Queue) Lease(ctx context.Context, p queue.LeaseParams) ([]queue.Lease, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	now := q.now()
	nowUs := now.UnixMicro()
	expires := now.Add(p.TTL).Truncate(time.Microsecond)
	var out []queue.Lease
	err := q.db.WriteTx(ctx, func(tx *storesqlite.Tx) error {
		out = nil
		order, err := tenantOrder(ctx, tx, nowUs)
		if err != nil || len(order) == 0 {
			return err
		}
		limits := p.Limits(order)
		active := map[string]int{}
		if len(limits) > 0 {
			if active, err = activeLeases(ctx, tx, nowUs); err != nil {
				return err
			}
		}
		var counter int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(last_served), 0) FROM queue_tenants`).Scan(&counter); err != nil {
			return err
		}
		out, err = queue.LeaseRounds(order, p.Max, limits, active, func(tenant string) (queue.Lease, bool, error) {
			l, ok, err := leaseOne(ctx, tx, tenant, p.Owner, nowUs, expires, counter+1)
			if ok {
				counter++
			}
			return l, ok, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// leaseOne leases the tenant's best leasable entry and records served as
// the tenant's last_served. ok is false when the tenant has none.
func leaseOne(ctx context.Context, tx *storesqlite.Tx, tenant, owner string, nowUs int64, expires time.Time,
	served int64) (queue.Lease, bool, error) {
	var runID string
	var attempts int
	err := tx.QueryRowContext(ctx, `SELECT run_id, attempts FROM queue_entries
		WHERE tenant_id = ? AND `+leasable+` ORDER BY priority DESC, enqueued_at, run_id LIMIT 1`,
		tenant, nowUs).Scan(&runID, &attempts)
	if err == sql.ErrNoRows {
		return queue.Lease{}, false, nil
	}
	if err != nil {
		return queue.Lease{}, false, err
	}
	l := queue.Lease{TenantID: tenant, RunID: runID, Owner: owner, Token: ids.New("lse_"),
		ExpiresAt: expires, Attempt: attempts + 1}
	if _, err := tx.ExecContext(ctx, `UPDATE queue_entries SET lease_owner = ?, lease_token = ?,
		lease_expires_at = ?, attempts = ? WHERE tenant_id = ? AND run_id = ?`,
		l.Owner, l.Token, l.ExpiresAt.UnixMicro(), l.Attempt, tenant, runID); err != nil {
		return queue.Lease{}, false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO queue_tenants (tenant_id, last_served) VALUES (?, ?)
		ON CONFLICT (tenant_id) DO UPDATE SET last_served = excluded.last_served`, tenant, served); err != nil {
		return queue.Lease{}, false, err
	}
	return l, true, nil
}

// tenantOrder lists tenants with leasable entries, least recently served
// first (never served first of all), then by their next entry's age. It
// never scans the whole queue: distinct tenants are found by a loose index
// scan (one index seek per tenant), and each tenant's next leasable entry by
// its ordered index.
func tenantOrder(ctx context.Context, tx *storesqlite.Tx, nowUs int64) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `WITH RECURSIVE t(id) AS (
			SELECT min(tenant_id) FROM queue_entries
			UNION ALL
			SELECT (SELECT min(tenant_id) FROM queue_entries WHERE tenant_id > t.id) FROM t WHERE t.id IS NOT NULL)
		SELECT t.id, coalesce(qt.last_served, 0),
			(SELECT e.enqueued_at FROM queue_entries e WHERE e.tenant_id = t.id
				AND (e.lease_expires_at IS NULL OR e.lease_expires_at <= ?)
				ORDER BY e.priority DESC, e.enqueued_at LIMIT 1) AS next_at
		FROM t LEFT JOIN queue_tenants qt ON qt.tenant_id = t.id
		WHERE t.id IS NOT NULL AND next_at IS NOT NULL
		ORDER BY 2, 3, 1`, nowUs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		var served, nextAt int64
		if err := rows.Scan(&t, &served, &nextAt); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// activeLeases counts unexpired leases per tenant.
func activeLeases(ctx context.Context, tx *storesqlite.Tx, nowUs int64) (map[string]int, error) {
	// INDEXED BY: left to itself the planner walks the whole queue in
	// tenant order for the GROUP BY; leased entries are few.
	rows, err := tx.QueryContext(ctx, `SELECT tenant_id, count(*) FROM queue_entries INDEXED BY queue_entries_lease
		WHERE lease_expires_at > ? GROUP BY tenant_id`, nowUs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var t string
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, rows.Err()
}

// Renew extends a lease to now+ttl. ErrConflict if the entry is gone (acked)
// or was leased again (its token changed). A lease that expired but was not
// taken by anyone can still be renewed.
func (q *Queue) Renew(ctx context.Context, l queue.Lease, ttl time.Duration) (queue.Lease, error) {
	if ttl <= 0 {
		return queue.Lease{}, errs.Field("ttl", "must be positive")
	}
	expires := q.now().Add(ttl).Truncate(time.Microsecond)
	err := q.db.WriteTx(ctx, func(tx *storesqlite.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE queue_entries SET lease_expires_at = ?
			WHERE tenant_id = ? AND run_id = ? AND lease_token = ?`, expires.UnixMicro(), l.TenantID, l.RunID, l.Token)
		if err != nil {
			return err
		}
		return lostIfNone(res, l)
	})
	if err != nil {
		return queue.Lease{}, err
	}
	l.ExpiresAt = expires
	return l, nil
}

// Ack removes the entry of a finished run. ErrConflict if the lease was lost.
func (q *Queue) Ack(ctx context.Context, l queue.Lease) error {
	return q.db.WriteTx(ctx, func(tx *storesqlite.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM queue_entries WHERE tenant_id = ? AND run_id = ? AND lease_token = ?`,
			l.TenantID, l.RunID, l.Token)
		if err != nil {
			return err
		}
		return lostIfNone(res, l)
	})
}

func lostIfNone(res sql.Result, l queue.Lease) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return errs.E(errs.Conflict, "lease on run %s was lost", l.RunID).
			WithDetails(map[string]any{"run_id": l.RunID})
	}
	return nil
}

// Depth counts, per tenant, entries waiting (never leased or lease expired)
// and entries under an unexpired lease. Tenants with nothing are absent.
func (q *Queue) Depth(ctx context.Context) (queue.Depth, error) {
	nowUs := q.now().UnixMicro()
	d := queue.Depth{Queued: map[string]int{}, Leased: map[string]int{}}
	// On the read pool: this scans the whole queue, and on the write
	// connection it stalled every write for as long (tens of ms at 100k
	// queued runs, once a second).
	rows, err := q.db.ReadSQL().QueryContext(ctx, `SELECT tenant_id,
		sum(CASE WHEN lease_expires_at > ? THEN 0 ELSE 1 END),
		sum(CASE WHEN lease_expires_at > ? THEN 1 ELSE 0 END)
		FROM queue_entries GROUP BY tenant_id`, nowUs, nowUs)
	if err != nil {
		return d, storesqlite.MapError(err, "queue")
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		var queued, leased int
		if err := rows.Scan(&t, &queued, &leased); err != nil {
			return d, storesqlite.MapError(err, "queue")
		}
		if queued > 0 {
			d.Queued[t] = queued
		}
		if leased > 0 {
			d.Leased[t] = leased
		}
	}
	return d, storesqlite.MapError(rows.Err(), "queue")
}

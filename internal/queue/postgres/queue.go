// Package postgres is the queue.Queue adapter for PostgreSQL: the run
// queue is the queue_entries table of the shared store (internal/store/
// postgres), so store.CreateRun enqueues a run in the same transaction that
// admits it, and every replica leases from the same table.
//
// Concurrency: Lease picks entries with SELECT ... FOR UPDATE SKIP LOCKED,
// so concurrent leasers on any number of replicas never take the same entry
// and never wait for each other's entries. A tenant with a concurrency limit
// is locked (a transaction advisory lock, taken in tenant order) while its
// unexpired leases are counted and new ones granted, so limits hold across
// replicas too.
//
// Fairness: queue_tenants records, per tenant, a value of the sequence
// queue_serve_seq taken when it last got a lease; Lease serves tenants with
// the lowest value (least recently served, never served first) first, one
// entry per tenant per round; within a tenant, higher priority then older
// first.
package postgres

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/queue"
	storepostgres "github.com/nexixai/agentos/internal/store/postgres"
)

var _ queue.Queue = (*Queue)(nil)

// tenantLockKey is the first half of the advisory lock key of a tenant's
// queue limit; the second is a hash of the schema and tenant id.
const tenantLockKey = 0x61677175 // "agqu"

// Queue is the PostgreSQL run queue.
type Queue struct {
	db *storepostgres.DB

	// Now is the clock deciding lease expiry (default time.Now). Tests set
	// it to a fake clock before use. Replicas sharing a queue need clocks
	// that agree to well within a lease TTL.
	Now func() time.Time
}

// New returns the queue stored in db's queue_entries table.
func New(db *storepostgres.DB) *Queue {
	return &Queue{db: db, Now: time.Now}
}

func (q *Queue) now() time.Time { return q.Now().UTC().Truncate(time.Microsecond) }

// Lease takes up to p.Max entries, in rounds: each round gives at most one
// entry to each tenant that has leasable work and is under its limit,
// least recently served tenants first; within a tenant, higher priority
// then older first. TenantLimit is called at most once per tenant per call.
func (q *Queue) Lease(ctx context.Context, p queue.LeaseParams) ([]queue.Lease, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	now := q.now()
	expires := now.Add(p.TTL).Truncate(time.Microsecond)
	var out []queue.Lease
	err := q.db.Tx(ctx, func(tx pgx.Tx) error {
		out = nil
		order, err := tenantOrder(ctx, tx, now)
		if err != nil || len(order) == 0 {
			return err
		}
		limits := p.Limits(order)
		active := map[string]int{}
		var limited []string
		for _, t := range order {
			if limits[t] > 0 {
				limited = append(limited, t)
			}
		}
		if len(limited) > 0 {
			if active, err = lockAndCount(ctx, tx, limited, now); err != nil {
				return err
			}
		}
		out, err = queue.LeaseRounds(order, p.Max, limits, active, func(tenant string) (queue.Lease, bool, error) {
			return leaseOne(ctx, tx, tenant, p.Owner, now, expires)
		})
		if err != nil {
			return err
		}
		return markServed(ctx, tx, out)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// leasable is the condition on queue_entries for "not held by an unexpired lease".
const leasable = `(lease_expires_at IS NULL OR lease_expires_at <= $2)`

// leaseOne leases the tenant's best leasable entry not locked by another
// transaction. ok is false when there is none.
func leaseOne(ctx context.Context, tx pgx.Tx, tenant, owner string, now, expires time.Time) (queue.Lease, bool, error) {
	l := queue.Lease{TenantID: tenant, Owner: owner, Token: ids.New("lse_"), ExpiresAt: expires}
	err := tx.QueryRow(ctx, `UPDATE queue_entries e SET lease_owner = $3, lease_token = $4, lease_expires_at = $5,
		attempts = e.attempts + 1
		WHERE e.tenant_id = $1 AND e.run_id = (
			SELECT run_id FROM queue_entries WHERE tenant_id = $1 AND `+leasable+`
			ORDER BY priority DESC, enqueued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING e.run_id, e.attempts`, tenant, now, owner, l.Token, expires).Scan(&l.RunID, &l.Attempt)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, false, nil
	}
	if err != nil {
		return l, false, err
	}
	return l, true, nil
}

// tenantOrder lists tenants with leasable entries, least recently served
// first (never served first of all), then by their oldest entry.
func tenantOrder(ctx context.Context, tx pgx.Tx, now time.Time) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT e.tenant_id FROM queue_entries e
		LEFT JOIN queue_tenants t ON t.tenant_id = e.tenant_id
		WHERE (e.lease_expires_at IS NULL OR e.lease_expires_at <= $1)
		GROUP BY e.tenant_id ORDER BY coalesce(max(t.last_served), 0), min(e.enqueued_at), e.tenant_id`, now)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// lockAndCount takes the advisory lock of each limited tenant, in tenant id
// order (so concurrent leasers cannot deadlock), then counts their
// unexpired leases: with the locks held, no other leaser grants any.
func lockAndCount(ctx context.Context, tx pgx.Tx, tenants []string, now time.Time) (map[string]int, error) {
	sorted := slices.Clone(tenants)
	slices.Sort(sorted)
	for _, t := range sorted {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || '/' || $2))`,
			tenantLockKey, t); err != nil {
			return nil, err
		}
	}
	rows, err := tx.Query(ctx, `SELECT tenant_id, count(*) FROM queue_entries
		WHERE tenant_id = ANY($1) AND lease_expires_at > $2 GROUP BY tenant_id`, sorted, now)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	var t string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&t, &n}, func() error { out[t] = n; return nil })
	return out, err
}

// markServed records when each tenant of leases was last served. Values of
// queue_serve_seq are handed out in serving order; rows are written in
// tenant id order so that concurrent leasers cannot deadlock.
func markServed(ctx context.Context, tx pgx.Tx, leases []queue.Lease) error {
	if len(leases) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT nextval('queue_serve_seq') FROM generate_series(1, $1::int)`, len(leases))
	if err != nil {
		return err
	}
	vals, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	slices.Sort(vals)
	last := map[string]int64{}
	for i, l := range leases {
		last[l.TenantID] = vals[i]
	}
	tenants := make([]string, 0, len(last))
	for t := range last {
		tenants = append(tenants, t)
	}
	slices.Sort(tenants)
	served := make([]int64, len(tenants))
	for i, t := range tenants {
		served[i] = last[t]
	}
	_, err = tx.Exec(ctx, `INSERT INTO queue_tenants (tenant_id, last_served)
		SELECT t, s FROM unnest($1::text[], $2::bigint[]) AS u(t, s) ORDER BY t
		ON CONFLICT (tenant_id) DO UPDATE SET last_served = greatest(queue_tenants.last_served, excluded.last_served)`,
		tenants, served)
	return err
}

// Renew extends a lease to now+ttl. ErrConflict if the entry is gone (acked)
// or was leased again (its token changed). A lease that expired but was not
// taken by anyone can still be renewed.
func (q *Queue) Renew(ctx context.Context, l queue.Lease, ttl time.Duration) (queue.Lease, error) {
	if ttl <= 0 {
		return queue.Lease{}, errs.Field("ttl", "must be positive")
	}
	expires := q.now().Add(ttl).Truncate(time.Microsecond)
	tag, err := q.db.Pool().Exec(ctx, `UPDATE queue_entries SET lease_expires_at = $1
		WHERE tenant_id = $2 AND run_id = $3 AND lease_token = $4`, expires, l.TenantID, l.RunID, l.Token)
	if err := lostIfNone(tag, err, l); err != nil {
		return queue.Lease{}, err
	}
	l.ExpiresAt = expires
	return l, nil
}

// Ack removes the entry of a finished run. ErrConflict if the lease was lost.
func (q *Queue) Ack(ctx context.Context, l queue.Lease) error {
	tag, err := q.db.Pool().Exec(ctx, `DELETE FROM queue_entries WHERE tenant_id = $1 AND run_id = $2 AND lease_token = $3`,
		l.TenantID, l.RunID, l.Token)
	return lostIfNone(tag, err, l)
}

func lostIfNone(tag pgconn.CommandTag, err error, l queue.Lease) error {
	if err != nil {
		return storepostgres.MapError(err, "queue entry")
	}
	if tag.RowsAffected() == 0 {
		return errs.E(errs.Conflict, "lease on run %s was lost", l.RunID).
			WithDetails(map[string]any{"run_id": l.RunID})
	}
	return nil
}

// Depth counts, per tenant, entries waiting (never leased or lease expired)
// and entries under an unexpired lease. Tenants with nothing are absent.
func (q *Queue) Depth(ctx context.Context) (queue.Depth, error) {
	d := queue.Depth{Queued: map[string]int{}, Leased: map[string]int{}}
	rows, err := q.db.Pool().Query(ctx, `SELECT tenant_id,
		count(*) FILTER (WHERE lease_expires_at IS NULL OR lease_expires_at <= $1),
		count(*) FILTER (WHERE lease_expires_at > $1)
		FROM queue_entries GROUP BY tenant_id`, q.now())
	if err != nil {
		return d, storepostgres.MapError(err, "queue")
	}
	var t string
	var queued, leased int
	_, err = pgx.ForEachRow(rows, []any{&t, &queued, &leased}, func() error {
		if queued > 0 {
			d.Queued[t] = queued
		}
		if leased > 0 {
			d.Leased[t] = leased
		}
		return nil
	})
	return d, storepostgres.MapError(err, "queue")
}

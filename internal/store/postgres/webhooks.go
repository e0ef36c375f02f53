package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

func (s stmts) InsertWebhookTargets(ctx context.Context, tenantID, runID string, targets []store.WebhookTarget) error {
	for i, t := range targets {
		if _, err := s.tx.Exec(ctx, `INSERT INTO run_webhooks (tenant_id, run_id, target_no, url, events, endpoint_id)
			VALUES ($1,$2,$3,$4,$5,$6)`, tenantID, runID, i, t.URL, t.Events, t.EndpointID); err != nil {
			return mapErr(err, "run webhook")
		}
	}
	return nil
}

func (s stmts) WebhookTargets(ctx context.Context, tenantID, runID string) ([]store.WebhookTarget, error) {
	rows, err := s.tx.Query(ctx, `SELECT url, events, endpoint_id FROM run_webhooks
		WHERE tenant_id = $1 AND run_id = $2 ORDER BY target_no`, tenantID, runID)
	if err != nil {
		return nil, mapErr(err, "run webhooks")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.WebhookTarget, error) {
		var t store.WebhookTarget
		err := r.Scan(&t.URL, &t.Events, &t.EndpointID)
		return t, err
	})
	return out, mapErr(err, "run webhooks")
}

func (s stmts) InsertDeliveries(ctx context.Context, ds []store.WebhookDelivery) error {
	for _, d := range ds {
		if _, err := s.tx.Exec(ctx, `INSERT INTO webhook_deliveries (tenant_id, delivery_id, run_id, sequence,
			event_id, event_type, url, endpoint_id, status, next_attempt_at, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
			d.TenantID, d.DeliveryID, d.RunID, d.Sequence, d.EventID, d.EventType, d.URL, d.EndpointID, d.Status,
			tsPtr(d.NextAttemptAt), ts(d.CreatedAt)); err != nil {
			return mapErr(err, "webhook delivery")
		}
	}
	return nil
}

// PutWebhookEndpoint creates or replaces an endpoint (created_at kept).
func (db *DB) PutWebhookEndpoint(ctx context.Context, e store.WebhookEndpoint) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO webhook_endpoints (tenant_id, endpoint_id, url, events, created_at,
		updated_at) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (tenant_id, endpoint_id) DO UPDATE SET url = excluded.url,
		events = excluded.events, updated_at = excluded.updated_at`,
		e.TenantID, e.EndpointID, e.URL, e.Events, ts(e.CreatedAt), ts(e.UpdatedAt))
	return mapErr(err, "webhook endpoint "+e.EndpointID)
}

// ListWebhookEndpoints lists a tenant's endpoints ordered by id.
func (db *DB) ListWebhookEndpoints(ctx context.Context, tenantID string) ([]store.WebhookEndpoint, error) {
	rows, err := db.pool.Query(ctx, `SELECT tenant_id, endpoint_id, url, events, created_at, updated_at
		FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY endpoint_id`, tenantID)
	if err != nil {
		return nil, mapErr(err, "webhook endpoints")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.WebhookEndpoint, error) {
		var e store.WebhookEndpoint
		var created, updated *time.Time
		err := r.Scan(&e.TenantID, &e.EndpointID, &e.URL, &e.Events, &created, &updated)
		e.CreatedAt, e.UpdatedAt = fromTS(created), fromTS(updated)
		return e, err
	})
	return out, mapErr(err, "webhook endpoints")
}

// DeleteWebhookEndpoint: ErrNotFound if absent or in another tenant.
func (db *DB) DeleteWebhookEndpoint(ctx context.Context, tenantID, endpointID string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND endpoint_id = $2`,
		tenantID, endpointID)
	return mustAffect(tag, err, "webhook endpoint "+endpointID)
}

const secretCols = `tenant_id, secret, previous, previous_until, created_at`

func scanSecret(row pgx.Row) (store.WebhookSecret, error) {
	var s store.WebhookSecret
	var until, created *time.Time
	err := row.Scan(&s.TenantID, &s.Secret, &s.Previous, &until, &created)
	s.PreviousUntil, s.CreatedAt = fromTS(until), fromTS(created)
	return s, err
}

// EnsureWebhookSecret returns the tenant's secret, storing s first when
// the tenant has none.
func (db *DB) EnsureWebhookSecret(ctx context.Context, s store.WebhookSecret) (store.WebhookSecret, error) {
	var out store.WebhookSecret
	err := db.Tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_secrets (tenant_id, secret, created_at) VALUES ($1,$2,$3)
			ON CONFLICT (tenant_id) DO NOTHING`, s.TenantID, s.Secret, ts(s.CreatedAt)); err != nil {
			return err
		}
		var err error
		out, err = scanSecret(tx.QueryRow(ctx, `SELECT `+secretCols+` FROM webhook_secrets WHERE tenant_id = $1`, s.TenantID))
		return err
	})
	return out, mapErr(err, "webhook secret")
}

// RotateWebhookSecret replaces the secret; the old one signs until
// s.PreviousUntil.
func (db *DB) RotateWebhookSecret(ctx context.Context, s store.WebhookSecret) (store.WebhookSecret, error) {
	out, err := scanSecret(db.pool.QueryRow(ctx, `INSERT INTO webhook_secrets (tenant_id, secret, previous, previous_until,
		created_at) VALUES ($1,$2,'',NULL,$3) ON CONFLICT (tenant_id) DO UPDATE SET previous = webhook_secrets.secret,
		previous_until = $4, secret = excluded.secret, created_at = excluded.created_at RETURNING `+secretCols,
		s.TenantID, s.Secret, ts(s.CreatedAt), ts(s.PreviousUntil)))
	return out, mapErr(err, "webhook secret")
}

const deliveryCols = `tenant_id, delivery_id, run_id, sequence, event_id, event_type, url, endpoint_id, status,
	attempts, next_attempt_at, created_at, completed_at`

func scanDelivery(row pgx.Row) (store.WebhookDelivery, error) {
	var d store.WebhookDelivery
	var attempts []byte
	var next, created, completed *time.Time
	if err := row.Scan(&d.TenantID, &d.DeliveryID, &d.RunID, &d.Sequence, &d.EventID, &d.EventType, &d.URL,
		&d.EndpointID, &d.Status, &attempts, &next, &created, &completed); err != nil {
		return d, err
	}
	d.NextAttemptAt, d.CreatedAt, d.CompletedAt = fromTSPtr(next), fromTS(created), fromTSPtr(completed)
	if err := json.Unmarshal(attempts, &d.Attempts); err != nil {
		return d, err
	}
	if d.Attempts == nil {
		d.Attempts = []store.WebhookAttempt{}
	}
	return d, nil
}

// ClaimWebhookDeliveries leases due deliveries; SKIP LOCKED lets
// replicas claim side by side without waiting on each other's rows.
func (db *DB) ClaimWebhookDeliveries(ctx context.Context, p store.ClaimDeliveriesParams) ([]store.WebhookDelivery, error) {
	limit := sqlstore.Limit(p.Limit, 50, 500)
	now := sqlstore.UTC(p.Now)
	rows, err := db.pool.Query(ctx, `UPDATE webhook_deliveries d SET lease_owner = $1, lease_until = $2
		FROM (SELECT tenant_id, delivery_id FROM webhook_deliveries
			WHERE status = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until <= $3)
			ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) c
		WHERE d.tenant_id = c.tenant_id AND d.delivery_id = c.delivery_id
		RETURNING d.tenant_id, d.delivery_id, d.run_id, d.sequence, d.event_id, d.event_type, d.url, d.endpoint_id,
			d.status, d.attempts, d.next_attempt_at, d.created_at, d.completed_at`,
		p.Owner, now.Add(p.Lease), now, limit)
	if err != nil {
		return nil, mapErr(err, "webhook deliveries")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.WebhookDelivery, error) { return scanDelivery(r) })
	return out, mapErr(err, "webhook deliveries")
}

// FinishWebhookAttempt appends the attempt and frees the lease.
func (db *DB) FinishWebhookAttempt(ctx context.Context, p store.FinishAttemptParams) error {
	a, err := json.Marshal(p.Attempt)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode webhook attempt")
	}
	var completed any
	if p.Status != store.DeliveryPending {
		completed = sqlstore.UTC(p.Attempt.At)
	}
	tag, err := db.pool.Exec(ctx, `UPDATE webhook_deliveries SET attempts = attempts || jsonb_build_array($1::jsonb),
		status = $2, next_attempt_at = $3, completed_at = $4, lease_owner = '', lease_until = NULL
		WHERE tenant_id = $5 AND delivery_id = $6 AND lease_owner = $7 AND status = 'pending'`,
		string(a), p.Status, tsPtr(p.NextAttemptAt), completed, p.TenantID, p.DeliveryID, p.Owner)
	if err != nil {
		return mapErr(err, "webhook delivery "+p.DeliveryID)
	}
	if tag.RowsAffected() == 0 {
		return errs.E(errs.Conflict, "webhook delivery %s is no longer claimed by %s", p.DeliveryID, p.Owner)
	}
	return nil
}

// ListWebhookDeliveries lists a run's deliveries by sequence then id.
func (db *DB) ListWebhookDeliveries(ctx context.Context, tenantID, runID string) ([]store.WebhookDelivery, error) {
	var one int
	if err := db.pool.QueryRow(ctx, `SELECT 1 FROM runs WHERE tenant_id = $1 AND run_id = $2`, tenantID, runID).Scan(&one); err != nil {
		return nil, mapErr(err, "run "+runID)
	}
	rows, err := db.pool.Query(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries WHERE tenant_id = $1 AND run_id = $2
		ORDER BY sequence, delivery_id`, tenantID, runID)
	if err != nil {
		return nil, mapErr(err, "webhook deliveries")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.WebhookDelivery, error) { return scanDelivery(r) })
	if out == nil {
		out = []store.WebhookDelivery{}
	}
	return out, mapErr(err, "webhook deliveries")
}

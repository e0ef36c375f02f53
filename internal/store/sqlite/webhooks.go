package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

func (s stmts) InsertWebhookTargets(ctx context.Context, tenantID, runID string, targets []store.WebhookTarget) error {
	for i, t := range targets {
		if _, err := s.tx.ExecContext(ctx, `INSERT INTO run_webhooks (tenant_id, run_id, target_no, url, events, endpoint_id)
			VALUES (?,?,?,?,?,?)`, tenantID, runID, i, t.URL, t.Events, t.EndpointID); err != nil {
			return mapErr(err, "run webhook")
		}
	}
	return nil
}

func (s stmts) WebhookTargets(ctx context.Context, tenantID, runID string) ([]store.WebhookTarget, error) {
	rows, err := s.tx.QueryContext(ctx, `SELECT url, events, endpoint_id FROM run_webhooks
		WHERE tenant_id = ? AND run_id = ? ORDER BY target_no`, tenantID, runID)
	if err != nil {
		return nil, mapErr(err, "run webhooks")
	}
	defer rows.Close()
	var out []store.WebhookTarget
	for rows.Next() {
		var t store.WebhookTarget
		if err := rows.Scan(&t.URL, &t.Events, &t.EndpointID); err != nil {
			return nil, mapErr(err, "run webhooks")
		}
		out = append(out, t)
	}
	return out, mapErr(rows.Err(), "run webhooks")
}

func (s stmts) InsertDeliveries(ctx context.Context, ds []store.WebhookDelivery) error {
	for _, d := range ds {
		if _, err := s.tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (tenant_id, delivery_id, run_id, sequence,
			event_id, event_type, url, endpoint_id, status, next_attempt_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
			d.TenantID, d.DeliveryID, d.RunID, d.Sequence, d.EventID, d.EventType, d.URL, d.EndpointID, d.Status,
			microsPtr(d.NextAttemptAt), micros(d.CreatedAt)); err != nil {
			return mapErr(err, "webhook delivery")
		}
	}
	return nil
}

// PutWebhookEndpoint creates or replaces an endpoint (created_at kept).
func (db *DB) PutWebhookEndpoint(ctx context.Context, e store.WebhookEndpoint) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO webhook_endpoints (tenant_id, endpoint_id, url, events, created_at,
			updated_at) VALUES (?,?,?,?,?,?) ON CONFLICT (tenant_id, endpoint_id) DO UPDATE SET url = excluded.url,
			events = excluded.events, updated_at = excluded.updated_at`,
			e.TenantID, e.EndpointID, e.URL, e.Events, micros(e.CreatedAt), micros(e.UpdatedAt))
		return mapErr(err, "webhook endpoint "+e.EndpointID)
	})
}

// ListWebhookEndpoints lists a tenant's endpoints ordered by id.
func (db *DB) ListWebhookEndpoints(ctx context.Context, tenantID string) ([]store.WebhookEndpoint, error) {
	rows, err := db.query(ctx, `SELECT tenant_id, endpoint_id, url, events, created_at, updated_at
		FROM webhook_endpoints WHERE tenant_id = ? ORDER BY endpoint_id`, tenantID)
	if err != nil {
		return nil, mapErr(err, "webhook endpoints")
	}
	defer rows.Close()
	var out []store.WebhookEndpoint
	for rows.Next() {
		var e store.WebhookEndpoint
		var created, updated sql.NullInt64
		if err := rows.Scan(&e.TenantID, &e.EndpointID, &e.URL, &e.Events, &created, &updated); err != nil {
			return nil, mapErr(err, "webhook endpoints")
		}
		e.CreatedAt, e.UpdatedAt = fromMicros(created), fromMicros(updated)
		out = append(out, e)
	}
	return out, mapErr(rows.Err(), "webhook endpoints")
}

// DeleteWebhookEndpoint: ErrNotFound if absent or in another tenant.
func (db *DB) DeleteWebhookEndpoint(ctx context.Context, tenantID, endpointID string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhook_endpoints WHERE tenant_id = ? AND endpoint_id = ?`,
			tenantID, endpointID)
		if err != nil {
			return mapErr(err, "webhook endpoint "+endpointID)
		}
		return mustAffect(res, "webhook endpoint "+endpointID)
	})
}

func scanSecret(row interface{ Scan(...any) error }) (store.WebhookSecret, error) {
	var s store.WebhookSecret
	var until, created sql.NullInt64
	err := row.Scan(&s.TenantID, &s.Secret, &s.Previous, &until, &created)
	s.PreviousUntil, s.CreatedAt = fromMicros(until), fromMicros(created)
	return s, err
}

const secretCols = `tenant_id, secret, previous, previous_until, created_at`

// EnsureWebhookSecret returns the tenant's secret, storing s first when
// the tenant has none.
func (db *DB) EnsureWebhookSecret(ctx context.Context, s store.WebhookSecret) (store.WebhookSecret, error) {
	// Every delivery attempt asks: once the secret exists, a read answers.
	out, err := scanSecret(db.queryRow(ctx, `SELECT `+secretCols+` FROM webhook_secrets WHERE tenant_id = ?`, s.TenantID))
	if err == nil {
		return out, nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return out, mapErr(err, "webhook secret")
	}
	err = db.WriteTx(ctx, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_secrets (tenant_id, secret, created_at) VALUES (?,?,?)
			ON CONFLICT (tenant_id) DO NOTHING`, s.TenantID, s.Secret, micros(s.CreatedAt)); err != nil {
			return mapErr(err, "webhook secret")
		}
		var err error
		out, err = scanSecret(tx.QueryRowContext(ctx, `SELECT `+secretCols+` FROM webhook_secrets WHERE tenant_id = ?`, s.TenantID))
		return mapErr(err, "webhook secret")
	})
	return out, err
}

// RotateWebhookSecret replaces the secret; the old one signs until
// s.PreviousUntil.
func (db *DB) RotateWebhookSecret(ctx context.Context, s store.WebhookSecret) (store.WebhookSecret, error) {
	var out store.WebhookSecret
	err := db.WriteTx(ctx, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_secrets (tenant_id, secret, previous, previous_until, created_at)
			VALUES (?,?,'',NULL,?) ON CONFLICT (tenant_id) DO UPDATE SET previous = webhook_secrets.secret,
			previous_until = ?, secret = excluded.secret, created_at = excluded.created_at`,
			s.TenantID, s.Secret, micros(s.CreatedAt), micros(s.PreviousUntil)); err != nil {
			return mapErr(err, "webhook secret")
		}
		var err error
		out, err = scanSecret(tx.QueryRowContext(ctx, `SELECT `+secretCols+` FROM webhook_secrets WHERE tenant_id = ?`, s.TenantID))
		return mapErr(err, "webhook secret")
	})
	return out, err
}

const deliveryCols = `tenant_id, delivery_id, run_id, sequence, event_id, event_type, url, endpoint_id, status,
	attempts, next_attempt_at, created_at, completed_at`

func scanDelivery(row interface{ Scan(...any) error }) (store.WebhookDelivery, error) {
	var d store.WebhookDelivery
	var attempts string
	var next, created, completed sql.NullInt64
	if err := row.Scan(&d.TenantID, &d.DeliveryID, &d.RunID, &d.Sequence, &d.EventID, &d.EventType, &d.URL,
		&d.EndpointID, &d.Status, &attempts, &next, &created, &completed); err != nil {
		return d, err
	}
	d.NextAttemptAt, d.CreatedAt, d.CompletedAt = fromMicrosPtr(next), fromMicros(created), fromMicrosPtr(completed)
	if err := json.Unmarshal([]byte(attempts), &d.Attempts); err != nil {
		return d, err
	}
	if d.Attempts == nil {
		d.Attempts = []store.WebhookAttempt{}
	}
	return d, nil
}

// ClaimWebhookDeliveries leases due deliveries: the single writer makes
// the select-and-update one step no other process interleaves with.
func (db *DB) ClaimWebhookDeliveries(ctx context.Context, p store.ClaimDeliveriesParams) ([]store.WebhookDelivery, error) {
	limit := sqlstore.Limit(p.Limit, 50, 500)
	now := sqlstore.UTC(p.Now)
	// Most polls find nothing due: answer those with a read, without
	// taking the single writer.
	var one int
	err := db.queryRow(ctx, `SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?
		AND (lease_until IS NULL OR lease_until <= ?) LIMIT 1`, now.UnixMicro(), now.UnixMicro()).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, mapErr(err, "webhook deliveries")
	}
	var out []store.WebhookDelivery
	err = db.WriteTx(ctx, func(tx *Tx) error {
		out = nil
		rows, err := tx.QueryContext(ctx, `UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ?
			WHERE (tenant_id, delivery_id) IN (SELECT tenant_id, delivery_id FROM webhook_deliveries
				WHERE status = 'pending' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)
				ORDER BY next_attempt_at LIMIT ?)
			RETURNING `+deliveryCols, p.Owner, now.Add(p.Lease).UnixMicro(), now.UnixMicro(), now.UnixMicro(), limit)
		if err != nil {
			return mapErr(err, "webhook deliveries")
		}
		defer rows.Close()
		for rows.Next() {
			d, err := scanDelivery(rows)
			if err != nil {
				return mapErr(err, "webhook deliveries")
			}
			out = append(out, d)
		}
		return mapErr(rows.Err(), "webhook deliveries")
	})
	return out, err
}

// FinishWebhookAttempt appends the attempt and frees the lease.
func (db *DB) FinishWebhookAttempt(ctx context.Context, p store.FinishAttemptParams) error {
	a, err := json.Marshal(p.Attempt)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encode webhook attempt")
	}
	var completed any
	if p.Status != store.DeliveryPending {
		completed = p.Attempt.At.UnixMicro()
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET attempts = json_insert(attempts, '$[#]', json(?)),
			status = ?, next_attempt_at = ?, completed_at = ?, lease_owner = '', lease_until = NULL
			WHERE tenant_id = ? AND delivery_id = ? AND lease_owner = ? AND status = 'pending'`,
			string(a), p.Status, microsPtr(p.NextAttemptAt), completed, p.TenantID, p.DeliveryID, p.Owner)
		if err != nil {
			return mapErr(err, "webhook delivery "+p.DeliveryID)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errs.E(errs.Conflict, "webhook delivery %s is no longer claimed by %s", p.DeliveryID, p.Owner)
		}
		return nil
	})
}

// ListWebhookDeliveries lists a run's deliveries by sequence then id.
func (db *DB) ListWebhookDeliveries(ctx context.Context, tenantID, runID string) ([]store.WebhookDelivery, error) {
	var one int
	if err := db.queryRow(ctx, `SELECT 1 FROM runs WHERE tenant_id = ? AND run_id = ?`, tenantID, runID).Scan(&one); err != nil {
		return nil, mapErr(err, "run "+runID)
	}
	rows, err := db.query(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries WHERE tenant_id = ? AND run_id = ?
		ORDER BY sequence, delivery_id`, tenantID, runID)
	if err != nil {
		return nil, mapErr(err, "webhook deliveries")
	}
	defer rows.Close()
	out := []store.WebhookDelivery{}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, mapErr(err, "webhook deliveries")
		}
		out = append(out, d)
	}
	return out, mapErr(rows.Err(), "webhook deliveries")
}

package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// PutForward records a forwarded run. ErrConflict if (tenant, run) exists.
func (db *DB) PutForward(ctx context.Context, f store.Forward) error {
	if err := f.Validate(); err != nil {
		return err
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO forwards (tenant_id, run_id, peer_stack_id, principal_id,
		remote_events_url, created_at) VALUES ($1,$2,$3,$4,$5,$6)`,
		f.TenantID, f.RunID, f.PeerStackID, f.PrincipalID, f.RemoteEventsURL, ts(f.CreatedAt))
	return mapErr(err, "forward of run "+f.RunID)
}

// GetForward returns ErrNotFound if absent or in another tenant.
func (db *DB) GetForward(ctx context.Context, tenantID, runID string) (store.Forward, error) {
	var f store.Forward
	var created *time.Time
	err := db.pool.QueryRow(ctx, `SELECT tenant_id, run_id, peer_stack_id, principal_id, remote_events_url,
		created_at FROM forwards WHERE tenant_id = $1 AND run_id = $2`, tenantID, runID).
		Scan(&f.TenantID, &f.RunID, &f.PeerStackID, &f.PrincipalID, &f.RemoteEventsURL, &created)
	if err != nil {
		return store.Forward{}, mapErr(err, "forward of run "+runID)
	}
	f.CreatedAt = fromTS(created)
	return f, nil
}

// UseJTI records jti until expiresAt and reports false if it is still
// recorded (a replay). Entries that expired before now are purged first.
func (db *DB) UseJTI(ctx context.Context, jti string, expiresAt time.Time) (bool, error) {
	if err := store.Required("jti", jti); err != nil {
		return false, err
	}
	now := db.now()
	var fresh bool
	err := db.Tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM used_jtis WHERE expires_at < $1`, now); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO used_jtis (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING`,
			jti, sqlstore.UTC(expiresAt))
		fresh = err == nil && tag.RowsAffected() == 1
		return err
	})
	return fresh, err
}

// IngestEvent stores a replicated event; false (and nothing stored) if its
// event_id was ingested before for the tenant.
func (db *DB) IngestEvent(ctx context.Context, e store.IngestedEvent) (bool, error) {
	in, err := sqlstore.EncodeIngested(e, db.now)
	if err != nil {
		return false, err
	}
	ev := in.Event
	tag, err := db.pool.Exec(ctx, `INSERT INTO ingested_events (tenant_id, event_id, run_id, sequence, event,
		source_stack, ingested_at) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (tenant_id, event_id) DO NOTHING`,
		ev.TenantID, ev.EventID, ev.RunID, ev.Sequence, in.Body, e.SourceStack, in.At)
	if err != nil {
		return false, mapErr(err, "ingested event "+ev.EventID)
	}
	return tag.RowsAffected() == 1, nil
}

// ListIngestedEvents lists a tenant's ingested events of one run by
// sequence, of one source stack unless source is empty.
func (db *DB) ListIngestedEvents(ctx context.Context, tenantID, runID, source string) ([]store.Event, error) {
	rows, err := db.pool.Query(ctx, `SELECT event FROM ingested_events WHERE tenant_id = $1 AND run_id = $2
		AND ($3 = '' OR source_stack = $3) ORDER BY sequence, event_id`, tenantID, runID, source)
	if err != nil {
		return nil, mapErr(err, "ingested events")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Event, error) {
		var b []byte
		if err := row.Scan(&b); err != nil {
			return store.Event{}, err
		}
		return sqlstore.DecodeIngested(b)
	})
	return out, mapErr(err, "ingested events")
}

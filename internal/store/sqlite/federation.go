package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// PutForward records a forwarded run. ErrConflict if (tenant, run) exists.
func (db *DB) PutForward(ctx context.Context, f store.Forward) error {
	if err := f.Validate(); err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO forwards (tenant_id, run_id, peer_stack_id, principal_id,
			remote_events_url, created_at) VALUES (?,?,?,?,?,?)`,
			f.TenantID, f.RunID, f.PeerStackID, f.PrincipalID, f.RemoteEventsURL, micros(sqlstore.UTC(f.CreatedAt)))
		return mapErr(err, "forward of run "+f.RunID)
	})
}

// GetForward returns ErrNotFound if absent or in another tenant.
func (db *DB) GetForward(ctx context.Context, tenantID, runID string) (store.Forward, error) {
	var f store.Forward
	var created sql.NullInt64
	err := db.queryRow(ctx, `SELECT tenant_id, run_id, peer_stack_id, principal_id, remote_events_url,
		created_at FROM forwards WHERE tenant_id = ? AND run_id = ?`, tenantID, runID).
		Scan(&f.TenantID, &f.RunID, &f.PeerStackID, &f.PrincipalID, &f.RemoteEventsURL, &created)
	if err != nil {
		return store.Forward{}, mapErr(err, "forward of run "+runID)
	}
	f.CreatedAt = fromMicros(created)
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
	err := db.WriteTx(ctx, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM used_jtis WHERE expires_at < ?`, now.UnixMicro()); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO used_jtis (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING`,
			jti, sqlstore.UTC(expiresAt).UnixMicro())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		fresh = n == 1
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
	var fresh bool
	err = db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO ingested_events (tenant_id, event_id, run_id, sequence, event,
			source_stack, ingested_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT (tenant_id, event_id) DO NOTHING`,
			ev.TenantID, ev.EventID, ev.RunID, ev.Sequence, in.Body, e.SourceStack, in.At.UnixMicro())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		fresh = n == 1
		return err
	})
	return fresh, err
}

// ListIngestedEvents lists a tenant's ingested events of one run by
// sequence, of one source stack unless source is empty.
func (db *DB) ListIngestedEvents(ctx context.Context, tenantID, runID, source string) ([]store.Event, error) {
	rows, err := db.query(ctx, `SELECT event FROM ingested_events WHERE tenant_id = ? AND run_id = ?
		AND (? = '' OR source_stack = ?) ORDER BY sequence, event_id`, tenantID, runID, source, source)
	if err != nil {
		return nil, mapErr(err, "ingested events")
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, mapErr(err, "ingested events")
		}
		e, err := sqlstore.DecodeIngested([]byte(s))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, mapErr(rows.Err(), "ingested events")
}

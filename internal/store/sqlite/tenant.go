package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// nullBytes is a nullable text column as bytes: nil for NULL.
func nullBytes(s sql.NullString) []byte {
	if !s.Valid {
		return nil
	}
	return []byte(s.String)
}

// CreateTenant inserts t. ErrConflict if the id exists.
func (db *DB) CreateTenant(ctx context.Context, t store.Tenant) error {
	c, err := sqlstore.EncodeTenant(t)
	if err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tenants (tenant_id, name, status, plan_tier, created_at, updated_at,
			default_policy_id, entitlements, quotas, metadata) VALUES (?,?,?,?,?,?,?,?,?,?)`,
			t.TenantID, t.Name, t.Status, t.PlanTier, micros(t.CreatedAt), micros(t.UpdatedAt), t.DefaultPolicyID,
			c.Entitlements, c.Quotas, c.Metadata)
		return mapErr(err, "tenant "+t.TenantID)
	})
}

const tenantCols = `tenant_id, name, status, plan_tier, created_at, updated_at, default_policy_id, entitlements, quotas, metadata`

func scanTenant(row interface{ Scan(...any) error }) (store.Tenant, error) {
	var t store.Tenant
	var created, updated sql.NullInt64
	var ent, quo, meta sql.NullString
	if err := row.Scan(&t.TenantID, &t.Name, &t.Status, &t.PlanTier, &created, &updated,
		&t.DefaultPolicyID, &ent, &quo, &meta); err != nil {
		return t, err
	}
	t.CreatedAt, t.UpdatedAt = fromMicros(created), fromMicros(updated)
	return t, sqlstore.DecodeTenant(&t, nullBytes(ent), nullBytes(quo), nullBytes(meta))
}

// GetTenant returns ErrNotFound for an unknown id.
func (db *DB) GetTenant(ctx context.Context, tenantID string) (store.Tenant, error) {
	t, err := scanTenant(db.queryRow(ctx, `SELECT `+tenantCols+` FROM tenants WHERE tenant_id = ?`, tenantID))
	return t, mapErr(err, "tenant "+tenantID)
}

// ListTenants returns all tenants ordered by id.
func (db *DB) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	rows, err := db.query(ctx, `SELECT `+tenantCols+` FROM tenants ORDER BY tenant_id`)
	if err != nil {
		return nil, mapErr(err, "tenants")
	}
	defer rows.Close()
	var out []store.Tenant
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, mapErr(err, "tenants")
		}
		out = append(out, t)
	}
	return out, mapErr(rows.Err(), "tenants")
}

// UpdateTenant replaces everything but tenant_id and created_at.
func (db *DB) UpdateTenant(ctx context.Context, t store.Tenant, ifUpdatedAt time.Time) error {
	c, err := sqlstore.EncodeTenant(t)
	if err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tenants SET name = ?, status = ?, plan_tier = ?, updated_at = ?,
			default_policy_id = ?, entitlements = ?, quotas = ?, metadata = ? WHERE tenant_id = ?
			AND (? = 1 OR updated_at = ?)`,
			t.Name, t.Status, t.PlanTier, micros(t.UpdatedAt), t.DefaultPolicyID, c.Entitlements, c.Quotas, c.Metadata,
			t.TenantID, ifUpdatedAt.IsZero(), micros(ifUpdatedAt))
		if err != nil {
			return mapErr(err, "tenant "+t.TenantID)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 && !ifUpdatedAt.IsZero() {
			var one int
			if tx.QueryRowContext(ctx, `SELECT 1 FROM tenants WHERE tenant_id = ?`, t.TenantID).Scan(&one) == nil {
				return sqlstore.TenantChanged(t.TenantID)
			}
		}
		return mustAffect(res, "tenant "+t.TenantID)
	})
}

// mustAffect turns "no row changed" into not found.
func mustAffect(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return mapErr(err, what)
	}
	if n == 0 {
		return errs.E(errs.NotFound, "%s not found", what)
	}
	return nil
}

package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// CreateTenant inserts t. ErrConflict if the id exists.
func (db *DB) CreateTenant(ctx context.Context, t store.Tenant) error {
	c, err := sqlstore.EncodeTenant(t)
	if err != nil {
		return err
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO tenants (tenant_id, name, status, plan_tier, created_at, updated_at,
		default_policy_id, entitlements, quotas, metadata) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`,
		t.TenantID, t.Name, t.Status, t.PlanTier, ts(t.CreatedAt), ts(t.UpdatedAt), t.DefaultPolicyID,
		c.Entitlements, c.Quotas, c.Metadata)
	return mapErr(err, "tenant "+t.TenantID)
}

const tenantCols = `tenant_id, name, status, plan_tier, created_at, updated_at, default_policy_id, entitlements, quotas, metadata`

func scanTenant(row pgx.Row) (store.Tenant, error) {
	var t store.Tenant
	var created, updated *time.Time
	var ent, quo, meta []byte
	if err := row.Scan(&t.TenantID, &t.Name, &t.Status, &t.PlanTier, &created, &updated,
		&t.DefaultPolicyID, &ent, &quo, &meta); err != nil {
		return t, err
	}
	t.CreatedAt, t.UpdatedAt = fromTS(created), fromTS(updated)
	return t, sqlstore.DecodeTenant(&t, ent, quo, meta)
}

// GetTenant returns ErrNotFound for an unknown id.
func (db *DB) GetTenant(ctx context.Context, tenantID string) (store.Tenant, error) {
	t, err := scanTenant(db.pool.QueryRow(ctx, `SELECT `+tenantCols+` FROM tenants WHERE tenant_id = $1`, tenantID))
	return t, mapErr(err, "tenant "+tenantID)
}

// ListTenants returns all tenants ordered by id.
func (db *DB) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+tenantCols+` FROM tenants ORDER BY tenant_id`)
	if err != nil {
		return nil, mapErr(err, "tenants")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Tenant, error) { return scanTenant(r) })
	return out, mapErr(err, "tenants")
}

// UpdateTenant replaces everything but tenant_id and created_at.
func (db *DB) UpdateTenant(ctx context.Context, t store.Tenant, ifUpdatedAt time.Time) error {
	c, err := sqlstore.EncodeTenant(t)
	if err != nil {
		return err
	}
	var cond any // NULL: unconditional
	if !ifUpdatedAt.IsZero() {
		cond = sqlstore.UTC(ifUpdatedAt)
	}
	tag, err := db.pool.Exec(ctx, `UPDATE tenants SET name = $2, status = $3, plan_tier = $4, updated_at = $5,
		default_policy_id = $6, entitlements = $7, quotas = $8, metadata = $9 WHERE tenant_id = $1
		AND ($10::timestamptz IS NULL OR updated_at = $10)`,
		t.TenantID, t.Name, t.Status, t.PlanTier, ts(t.UpdatedAt), t.DefaultPolicyID, c.Entitlements, c.Quotas,
		c.Metadata, cond)
	if err == nil && tag.RowsAffected() == 0 && cond != nil {
		var one int
		if db.pool.QueryRow(ctx, `SELECT 1 FROM tenants WHERE tenant_id = $1`, t.TenantID).Scan(&one) == nil {
			return sqlstore.TenantChanged(t.TenantID)
		}
	}
	return mustAffect(tag, err, "tenant "+t.TenantID)
}

// mustAffect maps err, and turns "no row changed" into not found.
func mustAffect(tag pgconn.CommandTag, err error, what string) error {
	if err != nil {
		return mapErr(err, what)
	}
	if tag.RowsAffected() == 0 {
		return errs.E(errs.NotFound, "%s not found", what)
	}
	return nil
}

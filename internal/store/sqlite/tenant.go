package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// toJSON encodes a JSON text column. The domain types are plain data, so
// Marshal only fails on values such as NaN, reported as invalid input.
func toJSON(field string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", errs.Field(field, "cannot be encoded: %v", err)
	}
	return string(b), nil
}

// fromJSON decodes a JSON text column (NULL leaves v unchanged).
func fromJSON(s sql.NullString, v any) error {
	if !s.Valid || s.String == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(s.String), v); err != nil {
		return errs.Wrap(errs.Internal, err, "corrupt JSON column")
	}
	return nil
}

// fromJSONNumbers is fromJSON keeping numbers in maps as json.Number, so that
// re-encoding is byte-identical (audit hashes depend on it).
func fromJSONNumbers(s sql.NullString, v any) error {
	if !s.Valid || s.String == "" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s.String)))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return errs.Wrap(errs.Internal, err, "corrupt JSON column")
	}
	return nil
}

// rawOrNull stores a json.RawMessage; empty is NULL.
func rawOrNull(m json.RawMessage) any {
	if len(m) == 0 {
		return nil
	}
	return string(m)
}

func rawFrom(s sql.NullString) json.RawMessage {
	if !s.Valid {
		return nil
	}
	return json.RawMessage(s.String)
}

// CreateTenant inserts t. ErrConflict if the id exists.
func (db *DB) CreateTenant(ctx context.Context, t store.Tenant) error {
	if err := required("tenant_id", t.TenantID); err != nil {
		return err
	}
	args, err := tenantArgs(t)
	if err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tenants (tenant_id, name, status, plan_tier, created_at, updated_at,
			default_policy_id, entitlements, quotas, metadata) VALUES (?,?,?,?,?,?,?,?,?,?)`, args...)
		return mapErr(err, "tenant "+t.TenantID)
	})
}

func tenantArgs(t store.Tenant) ([]any, error) {
	ent, err := toJSON("entitlements", t.Entitlements)
	if err != nil {
		return nil, err
	}
	quo, err := toJSON("quotas", t.Quotas)
	if err != nil {
		return nil, err
	}
	meta, err := toJSON("metadata", t.Metadata)
	if err != nil {
		return nil, err
	}
	return []any{t.TenantID, t.Name, t.Status, t.PlanTier, micros(t.CreatedAt), micros(t.UpdatedAt),
		t.DefaultPolicyID, ent, quo, meta}, nil
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
	if err := fromJSON(ent, &t.Entitlements); err != nil {
		return t, err
	}
	if err := fromJSON(quo, &t.Quotas); err != nil {
		return t, err
	}
	return t, fromJSON(meta, &t.Metadata)
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
func (db *DB) UpdateTenant(ctx context.Context, t store.Tenant) error {
	if err := required("tenant_id", t.TenantID); err != nil {
		return err
	}
	args, err := tenantArgs(t)
	if err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tenants SET name = ?, status = ?, plan_tier = ?, updated_at = ?,
			default_policy_id = ?, entitlements = ?, quotas = ?, metadata = ? WHERE tenant_id = ?`,
			args[1], args[2], args[3], args[5], args[6], args[7], args[8], args[9], t.TenantID)
		if err != nil {
			return mapErr(err, "tenant "+t.TenantID)
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

package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// CreateToken inserts tok. ErrConflict if the id or hash exists.
func (db *DB) CreateToken(ctx context.Context, tok store.Token) error {
	scopes, roles, err := sqlstore.EncodeToken(tok)
	if err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tokens (tenant_id, token_id, principal_id, secret_hash, scopes, roles,
			created_at, expires_at, revoked_at) VALUES (?,?,?,?,?,?,?,?,?)`,
			tok.TenantID, tok.TokenID, tok.PrincipalID, tok.SecretHash, scopes, roles,
			micros(tok.CreatedAt), microsPtr(tok.ExpiresAt), microsPtr(tok.RevokedAt))
		return mapErr(err, "token "+tok.TokenID)
	})
}

const tokenCols = `tenant_id, token_id, principal_id, secret_hash, scopes, roles, created_at, expires_at, revoked_at`

func scanToken(row interface{ Scan(...any) error }) (store.Token, error) {
	var t store.Token
	var scopes, roles sql.NullString
	var created, expires, revoked sql.NullInt64
	if err := row.Scan(&t.TenantID, &t.TokenID, &t.PrincipalID, &t.SecretHash, &scopes, &roles,
		&created, &expires, &revoked); err != nil {
		return t, err
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromMicros(created), fromMicrosPtr(expires), fromMicrosPtr(revoked)
	return t, sqlstore.DecodeToken(&t, nullBytes(scopes), nullBytes(roles))
}

// TokenBySecretHash finds a token in any tenant: it is how a request's
// tenant is found, so it is the one token lookup not led by tenant_id.
func (db *DB) TokenBySecretHash(ctx context.Context, hash string) (store.Token, error) {
	t, err := scanToken(db.queryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE secret_hash = ?`, hash))
	return t, mapErr(err, "token")
}

// RevokeToken sets RevokedAt. ErrNotFound if the token is not in tenantID.
func (db *DB) RevokeToken(ctx context.Context, tenantID, tokenID string, at time.Time) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE tenant_id = ? AND token_id = ?`,
			sqlstore.UTC(at).UnixMicro(), tenantID, tokenID)
		if err != nil {
			return mapErr(err, "token "+tokenID)
		}
		return mustAffect(res, "token "+tokenID)
	})
}

// ListTokens lists a tenant's tokens ordered by id. SecretHash is left empty.
func (db *DB) ListTokens(ctx context.Context, tenantID string) ([]store.Token, error) {
	rows, err := db.query(ctx, `SELECT `+tokenCols+` FROM tokens WHERE tenant_id = ? ORDER BY token_id`, tenantID)
	if err != nil {
		return nil, mapErr(err, "tokens")
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, mapErr(err, "tokens")
		}
		t.SecretHash = ""
		out = append(out, t)
	}
	return out, mapErr(rows.Err(), "tokens")
}

package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// CreateToken inserts tok. ErrConflict if the id or hash exists.
func (db *DB) CreateToken(ctx context.Context, tok store.Token) error {
	scopes, roles, err := sqlstore.EncodeToken(tok)
	if err != nil {
		return err
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO tokens (tenant_id, token_id, principal_id, secret_hash, scopes, roles,
		created_at, expires_at, revoked_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
		tok.TenantID, tok.TokenID, tok.PrincipalID, tok.SecretHash, scopes, roles,
		ts(tok.CreatedAt), tsPtr(tok.ExpiresAt), tsPtr(tok.RevokedAt))
	return mapErr(err, "token "+tok.TokenID)
}

const tokenCols = `tenant_id, token_id, principal_id, secret_hash, scopes, roles, created_at, expires_at, revoked_at`

func scanToken(row pgx.Row) (store.Token, error) {
	var t store.Token
	var scopes, roles []byte
	var created, expires, revoked *time.Time
	if err := row.Scan(&t.TenantID, &t.TokenID, &t.PrincipalID, &t.SecretHash, &scopes, &roles,
		&created, &expires, &revoked); err != nil {
		return t, err
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromTS(created), fromTSPtr(expires), fromTSPtr(revoked)
	return t, sqlstore.DecodeToken(&t, scopes, roles)
}

// TokenBySecretHash finds a token in any tenant: it is how a request's
// tenant is found, so it is the one token lookup not led by tenant_id.
func (db *DB) TokenBySecretHash(ctx context.Context, hash string) (store.Token, error) {
	t, err := scanToken(db.pool.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE secret_hash = $1`, hash))
	return t, mapErr(err, "token")
}

// RevokeToken sets RevokedAt. ErrNotFound if the token is not in tenantID.
func (db *DB) RevokeToken(ctx context.Context, tenantID, tokenID string, at time.Time) error {
	tag, err := db.pool.Exec(ctx, `UPDATE tokens SET revoked_at = $1 WHERE tenant_id = $2 AND token_id = $3`,
		sqlstore.UTC(at), tenantID, tokenID)
	return mustAffect(tag, err, "token "+tokenID)
}

// ListTokens lists a tenant's tokens ordered by id. SecretHash is left empty.
func (db *DB) ListTokens(ctx context.Context, tenantID string) ([]store.Token, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+tokenCols+` FROM tokens WHERE tenant_id = $1 ORDER BY token_id`, tenantID)
	if err != nil {
		return nil, mapErr(err, "tokens")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Token, error) {
		t, err := scanToken(r)
		t.SecretHash = ""
		return t, err
	})
	return out, mapErr(err, "tokens")
}

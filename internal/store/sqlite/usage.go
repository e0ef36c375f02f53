package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// LockBudgetWindow takes no lock of its own: the write lock every write
// transaction holds serializes reservations.
func (s stmts) LockBudgetWindow(context.Context, string, string, time.Time) error { return nil }

func (s stmts) BudgetUsed(ctx context.Context, tenantID, window string, start time.Time) (store.BudgetUsage, error) {
	return budgetUsed(ctx, s.tx, tenantID, window, start)
}

func (s stmts) InsertReservation(ctx context.Context, r store.Reservation) error {
	_, err := s.tx.ExecContext(ctx, `INSERT INTO budget_reservations (tenant_id, reservation_id, budget_window,
		window_start, tokens, cost_usd, settled) VALUES (?,?,?,?,?,?,0)`,
		r.TenantID, r.ReservationID, r.Window, r.WindowStart.UnixMicro(), r.Tokens, r.CostUSD)
	return mapErr(err, "reservation")
}

// queryRower is *sql.DB or *Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func budgetUsed(ctx context.Context, q queryRower, tenantID, window string, start time.Time) (store.BudgetUsage, error) {
	u := store.BudgetUsage{Window: window, WindowStart: sqlstore.UTC(start)}
	err := q.QueryRowContext(ctx, `SELECT coalesce(sum(tokens), 0), coalesce(sum(cost_usd), 0) FROM budget_reservations
		WHERE tenant_id = ? AND budget_window = ? AND window_start = ?`, tenantID, window, u.WindowStart.UnixMicro()).
		Scan(&u.UsedTokens, &u.UsedCostUSD)
	return u, mapErr(err, "budget")
}

// SettleBudget replaces a reservation's amounts by the real usage.
// ErrNotFound if the reservation is unknown in its tenant.
func (db *DB) SettleBudget(ctx context.Context, r store.Reservation, tokens int64, costUSD float64) error {
	if err := store.ValidateSettlement(tokens, costUSD); err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE budget_reservations SET tokens = ?, cost_usd = ?, settled = 1
			WHERE tenant_id = ? AND reservation_id = ?`, tokens, costUSD, r.TenantID, r.ReservationID)
		if err != nil {
			return err
		}
		return mustAffect(res, "reservation "+r.ReservationID)
	})
}

// BudgetUsage returns settled plus reserved amounts of one window.
func (db *DB) BudgetUsage(ctx context.Context, tenantID, window string, windowStart time.Time) (store.BudgetUsage, error) {
	return budgetUsed(ctx, db.r, tenantID, window, windowStart)
}

// RecordUsage appends records to the usage ledger in one transaction;
// UsageID (ids.New("usg_")) and Time (now) are filled when empty.
func (db *DB) RecordUsage(ctx context.Context, us ...store.UsageRecord) error {
	us, err := sqlstore.PrepareUsages(us, db.now)
	if err != nil || len(us) == 0 {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		for _, u := range us {
			if _, err := tx.ExecContext(ctx, `INSERT INTO usage_records (tenant_id, usage_id, principal_id, agent_id, run_id,
				model_id, backend, operation, input_tokens, output_tokens, cost_usd, time, actor_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
				u.TenantID, u.UsageID, u.PrincipalID, u.AgentID, u.RunID, u.ModelID, u.Backend, u.Operation,
				u.InputTokens, u.OutputTokens, u.CostUSD, sqlstore.UTC(u.Time).UnixMicro(), u.ActorID); err != nil {
				return mapErr(err, "usage record "+u.UsageID)
			}
		}
		return nil
	})
}

// ListUsage returns matching records oldest first. Since is inclusive,
// Until exclusive; zero times are open ends.
func (db *DB) ListUsage(ctx context.Context, f store.UsageFilter) ([]store.UsageRecord, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	q := `SELECT tenant_id, usage_id, principal_id, agent_id, run_id, model_id, backend, operation, input_tokens,
		output_tokens, cost_usd, time, actor_id FROM usage_records WHERE tenant_id = ?`
	args := []any{f.TenantID}
	for _, c := range []struct{ col, v string }{{"principal_id", f.PrincipalID}, {"agent_id", f.AgentID}, {"run_id", f.RunID}} {
		if c.v != "" {
			q += ` AND ` + c.col + ` = ?`
			args = append(args, c.v)
		}
	}
	if !f.Since.IsZero() {
		q += ` AND time >= ?`
		args = append(args, sqlstore.UTC(f.Since).UnixMicro())
	}
	if !f.Until.IsZero() {
		q += ` AND time < ?`
		args = append(args, sqlstore.UTC(f.Until).UnixMicro())
	}
	q += ` ORDER BY time, usage_id`
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err, "usage")
	}
	defer rows.Close()
	var out []store.UsageRecord
	for rows.Next() {
		var u store.UsageRecord
		var t int64
		if err := rows.Scan(&u.TenantID, &u.UsageID, &u.PrincipalID, &u.AgentID, &u.RunID, &u.ModelID, &u.Backend,
			&u.Operation, &u.InputTokens, &u.OutputTokens, &u.CostUSD, &t, &u.ActorID); err != nil {
			return nil, mapErr(err, "usage")
		}
		u.Time = time.UnixMicro(t).UTC()
		out = append(out, u)
	}
	return out, mapErr(rows.Err(), "usage")
}

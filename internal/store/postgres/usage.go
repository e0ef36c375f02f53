package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

// LockBudgetWindow locks the (tenant, window, start) row, creating it if
// needed. Every reservation and settlement of the window takes it first.
func (s stmts) LockBudgetWindow(ctx context.Context, tenantID, window string, start time.Time) error {
	_, err := s.tx.Exec(ctx, `INSERT INTO budget_windows (tenant_id, budget_window, window_start) VALUES ($1,$2,$3)
		ON CONFLICT (tenant_id, budget_window, window_start) DO UPDATE SET window_start = excluded.window_start`,
		tenantID, window, start)
	return mapErr(err, "budget window")
}

func (s stmts) BudgetUsed(ctx context.Context, tenantID, window string, start time.Time) (store.BudgetUsage, error) {
	return budgetUsed(ctx, s.tx, tenantID, window, start)
}

func (s stmts) InsertReservation(ctx context.Context, r store.Reservation) error {
	_, err := s.tx.Exec(ctx, `INSERT INTO budget_reservations (tenant_id, reservation_id, budget_window,
		window_start, tokens, cost_usd, settled) VALUES ($1,$2,$3,$4,$5,$6,false)`,
		r.TenantID, r.ReservationID, r.Window, r.WindowStart, r.Tokens, r.CostUSD)
	return mapErr(err, "reservation")
}

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func budgetUsed(ctx context.Context, q querier, tenantID, window string, start time.Time) (store.BudgetUsage, error) {
	u := store.BudgetUsage{Window: window, WindowStart: sqlstore.UTC(start)}
	err := q.QueryRow(ctx, `SELECT coalesce(sum(tokens), 0)::bigint, coalesce(sum(cost_usd), 0) FROM budget_reservations
		WHERE tenant_id = $1 AND budget_window = $2 AND window_start = $3`, tenantID, window, u.WindowStart).
		Scan(&u.UsedTokens, &u.UsedCostUSD)
	return u, mapErr(err, "budget")
}

// SettleBudget replaces a reservation's amounts by the real usage, under
// the window's lock. ErrNotFound if the reservation is unknown in its tenant.
func (db *DB) SettleBudget(ctx context.Context, r store.Reservation, tokens int64, costUSD float64) error {
	if err := store.ValidateSettlement(tokens, costUSD); err != nil {
		return err
	}
	return db.Tx(ctx, func(tx pgx.Tx) error {
		var window string
		var start time.Time
		err := tx.QueryRow(ctx, `SELECT budget_window, window_start FROM budget_reservations
			WHERE tenant_id = $1 AND reservation_id = $2`, r.TenantID, r.ReservationID).Scan(&window, &start)
		if err != nil {
			return mapErr(err, "reservation "+r.ReservationID)
		}
		if err := (stmts{tx}).LockBudgetWindow(ctx, r.TenantID, window, start); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE budget_reservations SET tokens = $1, cost_usd = $2, settled = true
			WHERE tenant_id = $3 AND reservation_id = $4`, tokens, costUSD, r.TenantID, r.ReservationID)
		return mustAffect(tag, err, "reservation "+r.ReservationID)
	})
}

// BudgetUsage returns settled plus reserved amounts of one window.
func (db *DB) BudgetUsage(ctx context.Context, tenantID, window string, windowStart time.Time) (store.BudgetUsage, error) {
	return budgetUsed(ctx, db.pool, tenantID, window, windowStart)
}

// RecordUsage appends records to the usage ledger in one transaction;
// UsageID (ids.New("usg_")) and Time (now) are filled when empty.
func (db *DB) RecordUsage(ctx context.Context, us ...store.UsageRecord) error {
	us, err := sqlstore.PrepareUsages(us, db.now)
	if err != nil {
		return err
	}
	if len(us) == 0 {
		return nil
	}
	return db.Tx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{} // one round trip
		for _, u := range us {
			b.Queue(`INSERT INTO usage_records (tenant_id, usage_id, principal_id, agent_id, run_id,
				model_id, backend, operation, input_tokens, output_tokens, cost_usd, time, actor_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)`,
				u.TenantID, u.UsageID, u.PrincipalID, u.AgentID, u.RunID, u.ModelID, u.Backend, u.Operation,
				u.InputTokens, u.OutputTokens, u.CostUSD, sqlstore.UTC(u.Time), u.ActorID)
		}
		return mapErr(tx.SendBatch(ctx, b).Close(), "usage record")
	})
}

// ListUsage returns matching records oldest first. Since is inclusive,
// Until exclusive; zero times are open ends.
func (db *DB) ListUsage(ctx context.Context, f store.UsageFilter) ([]store.UsageRecord, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	q := `SELECT tenant_id, usage_id, principal_id, agent_id, run_id, model_id, backend, operation, input_tokens,
		output_tokens, cost_usd, time, actor_id FROM usage_records WHERE tenant_id = $1`
	args := []any{f.TenantID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + itoa(len(args))
	}
	for _, c := range []struct{ col, v string }{{"principal_id", f.PrincipalID}, {"agent_id", f.AgentID}, {"run_id", f.RunID}} {
		if c.v != "" {
			q += ` AND ` + c.col + ` = ` + arg(c.v)
		}
	}
	if !f.Since.IsZero() {
		q += ` AND time >= ` + arg(sqlstore.UTC(f.Since))
	}
	if !f.Until.IsZero() {
		q += ` AND time < ` + arg(sqlstore.UTC(f.Until))
	}
	q += ` ORDER BY time, usage_id`
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err, "usage")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.UsageRecord, error) {
		var u store.UsageRecord
		err := row.Scan(&u.TenantID, &u.UsageID, &u.PrincipalID, &u.AgentID, &u.RunID, &u.ModelID, &u.Backend,
			&u.Operation, &u.InputTokens, &u.OutputTokens, &u.CostUSD, &u.Time, &u.ActorID)
		u.Time = u.Time.UTC()
		return u, err
	})
	return out, mapErr(err, "usage")
}

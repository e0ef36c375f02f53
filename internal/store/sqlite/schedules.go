package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlstore"
)

const scheduleCols = `tenant_id, schedule_id, agent_id, cron, every, timezone, input, thread_id, status, misfire_policy,
	catch_up_max, principal_id, scopes, roles, next_run_at, last_tick_at, last_run_id, last_error, created_at, updated_at`

func scanSchedule(row interface{ Scan(...any) error }) (store.Schedule, error) {
	var s store.Schedule
	var input, scopes, roles string
	var next, last, created, updated sql.NullInt64
	if err := row.Scan(&s.TenantID, &s.ScheduleID, &s.AgentID, &s.Cron, &s.Every, &s.Timezone, &input, &s.ThreadID,
		&s.Status, &s.MisfirePolicy, &s.CatchUpMax, &s.PrincipalID, &scopes, &roles, &next, &last, &s.LastRunID,
		&s.LastError, &created, &updated); err != nil {
		return s, err
	}
	s.Input = sqlstore.RawFrom([]byte(input))
	s.NextRunAt, s.LastTickAt = fromMicrosPtr(next), fromMicrosPtr(last)
	s.CreatedAt, s.UpdatedAt = fromMicros(created), fromMicros(updated)
	if err := sqlstore.FromJSON([]byte(scopes), &s.Scopes); err != nil {
		return s, err
	}
	return s, sqlstore.FromJSON([]byte(roles), &s.Roles)
}

// CreateSchedule inserts s. ErrConflict if the id exists.
func (db *DB) CreateSchedule(ctx context.Context, s store.Schedule) error {
	scopes, roles, err := sqlstore.EncodeScheduleAuth(s)
	if err != nil {
		return err
	}
	return db.WriteTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO schedules (`+scheduleCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			s.TenantID, s.ScheduleID, s.AgentID, s.Cron, s.Every, s.Timezone, string(s.Input), s.ThreadID, s.Status,
			s.MisfirePolicy, s.CatchUpMax, s.PrincipalID, scopes, roles, microsPtr(s.NextRunAt), microsPtr(s.LastTickAt),
			s.LastRunID, s.LastError, micros(s.CreatedAt), micros(s.UpdatedAt))
		return mapErr(err, "schedule "+s.ScheduleID)
	})
}

// GetSchedule: ErrNotFound if absent or in another tenant.
func (db *DB) GetSchedule(ctx context.Context, tenantID, scheduleID string) (store.Schedule, error) {
	s, err := scanSchedule(db.queryRow(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE tenant_id = ? AND schedule_id = ?`,
		tenantID, scheduleID))
	return s, mapErr(err, "schedule "+scheduleID)
}

// ListSchedules lists a tenant's schedules by id.
func (db *DB) ListSchedules(ctx context.Context, p store.ListSchedulesParams) ([]store.Schedule, string, error) {
	limit := sqlstore.Limit(p.Limit, 50, 500)
	rows, err := db.query(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE tenant_id = ? AND schedule_id > ?
		ORDER BY schedule_id LIMIT ?`, p.TenantID, p.Cursor, limit+1)
	if err != nil {
		return nil, "", mapErr(err, "schedules")
	}
	defer rows.Close()
	out := []store.Schedule{}
	for rows.Next() {
		s, err := scanSchedule(rows)
		if err != nil {
			return nil, "", mapErr(err, "schedules")
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, "", mapErr(err, "schedules")
	}
	out, next := sqlstore.PageSchedules(out, limit)
	return out, next, nil
}

// SetScheduleStatus pauses or resumes a schedule.
func (db *DB) SetScheduleStatus(ctx context.Context, tenantID, scheduleID, status string, nextRunAt *time.Time, at time.Time) (store.Schedule, error) {
	var out store.Schedule
	err := db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE schedules SET status = ?, next_run_at = ?, updated_at = ?
			WHERE tenant_id = ? AND schedule_id = ?`, status, microsPtr(nextRunAt), micros(at), tenantID, scheduleID)
		if err != nil {
			return mapErr(err, "schedule "+scheduleID)
		}
		if err := mustAffect(res, "schedule "+scheduleID); err != nil {
			return err
		}
		out, err = scanSchedule(tx.QueryRowContext(ctx, `SELECT `+scheduleCols+` FROM schedules
			WHERE tenant_id = ? AND schedule_id = ?`, tenantID, scheduleID))
		return mapErr(err, "schedule "+scheduleID)
	})
	return out, err
}

// DeleteSchedule: ErrNotFound if absent or in another tenant.
func (db *DB) DeleteSchedule(ctx context.Context, tenantID, scheduleID string) error {
	return db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM schedules WHERE tenant_id = ? AND schedule_id = ?`, tenantID, scheduleID)
		if err != nil {
			return mapErr(err, "schedule "+scheduleID)
		}
		return mustAffect(res, "schedule "+scheduleID)
	})
}

// DueSchedules lists active schedules of every tenant due at now.
func (db *DB) DueSchedules(ctx context.Context, now time.Time, limit int) ([]store.Schedule, error) {
	rows, err := db.query(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE status = 'active' AND next_run_at <= ?
		ORDER BY next_run_at LIMIT ?`, sqlstore.UTC(now).UnixMicro(), sqlstore.Limit(limit, 100, 1000))
	if err != nil {
		return nil, mapErr(err, "schedules")
	}
	defer rows.Close()
	var out []store.Schedule
	for rows.Next() {
		s, err := scanSchedule(rows)
		if err != nil {
			return nil, mapErr(err, "schedules")
		}
		out = append(out, s)
	}
	return out, mapErr(rows.Err(), "schedules")
}

// AdvanceSchedule moves an active schedule past its fired ticks if its
// next_run_at is still p.FromNextRunAt.
func (db *DB) AdvanceSchedule(ctx context.Context, p store.AdvanceScheduleParams) (bool, error) {
	var ok bool
	err := db.WriteTx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE schedules SET next_run_at = ?, last_tick_at = coalesce(?, last_tick_at),
			last_run_id = CASE WHEN ? = '' THEN last_run_id ELSE ? END, last_error = ?, updated_at = ?
			WHERE tenant_id = ? AND schedule_id = ? AND status = 'active' AND next_run_at = ?`,
			micros(p.NextRunAt), microsPtr(p.LastTickAt), p.LastRunID, p.LastRunID, p.LastError, micros(p.UpdatedAt),
			p.TenantID, p.ScheduleID, sqlstore.UTC(p.FromNextRunAt).UnixMicro())
		if err != nil {
			return mapErr(err, "schedule "+p.ScheduleID)
		}
		n, err := res.RowsAffected()
		ok = n == 1
		return mapErr(err, "schedule "+p.ScheduleID)
	})
	return ok, err
}

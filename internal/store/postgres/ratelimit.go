package postgres

import (
	"context"
	"math"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/errs"
)

// availSQL is the bucket's tokens now: the stored tokens refilled at the
// stored rate for the time since updated_at, capped at the stored burst
// and then at the new burst ($4).
const availSQL = `least($4::float8, b.burst::float8,
        b.tokens + b.rate * greatest(0, extract(epoch FROM excluded.updated_at - b.updated_at)::float8))`

// takeTokenSQL takes one token from the (tenant, name) bucket in one
// statement. The row lock ON CONFLICT DO UPDATE takes serialises replicas,
// and the refill is computed from the database's clock (clock_timestamp),
// so the limit is exact across replicas whatever their clocks say.
//
// The refill uses the rate and burst stored with the bucket (the quota in
// force while the time passed), then caps at the new burst: a changed
// quota is applied in place and a raised burst gets no free refill, as in
// the in-process tenancy.Limiter. updated_at only moves forward, so a
// statement that read the clock before waiting for the lock cannot make
// the next one refill the same interval twice.
var takeTokenSQL = strings.ReplaceAll(`
INSERT INTO rate_buckets AS b (tenant_id, name, tokens, rate, burst, admitted, updated_at)
VALUES ($1, $2, $4::float8 - 1, $3, $4, true, clock_timestamp())
ON CONFLICT (tenant_id, name) DO UPDATE SET
    tokens = AVAIL - CASE WHEN AVAIL >= 1 THEN 1 ELSE 0 END,
    admitted = AVAIL >= 1,
    rate = excluded.rate, burst = excluded.burst,
    updated_at = greatest(b.updated_at, excluded.updated_at)
RETURNING tokens, admitted`, "AVAIL", availSQL)

// TakeToken takes one token from the (tenantID, name) bucket shared by
// every replica on this database, refilling at ratePerSec up to burst
// (both > 0; internal/tenancy.SharedLimiter resolves unlimited and default
// bursts before calling). When refused, retryAfter is how long until a
// token is available at the current rate.
func (db *DB) TakeToken(ctx context.Context, tenantID, name string, ratePerSec float64, burst int) (ok bool, retryAfter time.Duration, err error) {
	if !(ratePerSec > 0) || math.IsInf(ratePerSec, 1) {
		return false, 0, errs.Field("rate", "must be a positive finite number, got %v", ratePerSec)
	}
	if burst <= 0 {
		return false, 0, errs.Field("burst", "must be positive, got %d", burst)
	}
	var tokens float64
	if err := db.pool.QueryRow(ctx, takeTokenSQL, tenantID, name, ratePerSec, burst).Scan(&tokens, &ok); err != nil {
		return false, 0, mapErr(err, "rate bucket "+name)
	}
	if ok {
		return true, 0, nil
	}
	return false, time.Duration((1 - tokens) / ratePerSec * float64(time.Second)), nil
}

package modelpolicy

import (
	"time"

	"github.com/nexixai/agentos/internal/tenancy"
)

// RateLimiter is the per-tenant rate limiting model-policy needs;
// internal/tenancy.Limiter, the node's one limiter, satisfies it and is the
// default. Both methods report whether the call may proceed and, if not,
// how long to wait.
type RateLimiter interface {
	Allow(tenantID, name string, ratePerSec float64, burst int) (bool, time.Duration)
	AllowPerMinute(tenantID, name string, perMinute int) (bool, time.Duration)
}

var _ RateLimiter = (*tenancy.Limiter)(nil)

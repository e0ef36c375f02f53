package tenancy_test

import (
	"testing"

	"github.com/nexixai/agentos/internal/tenancy"
	"github.com/nexixai/agentos/internal/tenancy/limitertest"
)

// The in-process limiter passes the RateLimiter conformance suite (the
// shared one is run against PostgreSQL in internal/store/postgres).
func TestLimiterConformance(t *testing.T) {
	t.Parallel()
	limitertest.Run(t, func(*testing.T) tenancy.RateLimiter { return tenancy.NewLimiter() })
}

// Package storetest is the conformance suite of the store port: every
// adapter (SQLite, PostgreSQL, fakes) runs Run from its own test and must
// pass all of it. It is the executable contract of package store.
//
// Conventions the suite relies on: times come back in UTC with microsecond
// precision, JSON fields round-trip (the suite writes compact JSON), and every
// error is matched with errors.Is against the errs sentinels.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

// Run exercises an adapter. newStore must return a fresh, empty store for
// each call (it is called once per subtest, from parallel subtests) and
// should close it with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("Tenants", func(t *testing.T) { t.Parallel(); testTenants(t, newStore) })
	t.Run("Tokens", func(t *testing.T) { t.Parallel(); testTokens(t, newStore) })
	t.Run("Agents", func(t *testing.T) { t.Parallel(); testAgents(t, newStore) })
	t.Run("Runs", func(t *testing.T) { t.Parallel(); testRuns(t, newStore) })
	t.Run("RunChanges", func(t *testing.T) { t.Parallel(); testRunChanges(t, newStore) })
	t.Run("Events", func(t *testing.T) { t.Parallel(); testEvents(t, newStore) })
	t.Run("Idempotency", func(t *testing.T) { t.Parallel(); testIdempotency(t, newStore) })
	t.Run("Audit", func(t *testing.T) { t.Parallel(); testAudit(t, newStore) })
	t.Run("KV", func(t *testing.T) { t.Parallel(); testKV(t, newStore) })
	t.Run("Budget", func(t *testing.T) { t.Parallel(); testBudget(t, newStore) })
	t.Run("Usage", func(t *testing.T) { t.Parallel(); testUsage(t, newStore) })
	t.Run("Federation", func(t *testing.T) { t.Parallel(); testFederation(t, newStore) })
	t.Run("Tools", func(t *testing.T) { t.Parallel(); testTools(t, newStore) })
	t.Run("MCPServers", func(t *testing.T) { t.Parallel(); testMCPServers(t, newStore) })
	t.Run("Memory", func(t *testing.T) { t.Parallel(); testMemory(t, newStore) })
	t.Run("Threads", func(t *testing.T) { t.Parallel(); testThreads(t, newStore) })
	t.Run("Approvals", func(t *testing.T) { t.Parallel(); testApprovals(t, newStore) })
	t.Run("Webhooks", func(t *testing.T) { t.Parallel(); testWebhooks(t, newStore) })
	t.Run("Schedules", func(t *testing.T) { t.Parallel(); testSchedules(t, newStore) })
	t.Run("Workers", func(t *testing.T) { t.Parallel(); testWorkers(t, newStore) })
	t.Run("Artifacts", func(t *testing.T) { t.Parallel(); testArtifacts(t, newStore) })
	t.Run("Ping", func(t *testing.T) {
		t.Parallel()
		require.NoError(t, newStore(t).Ping(context.Background()))
	})
}

// base is a fixed instant with microsecond precision in UTC.
var base = time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func ptr[T any](v T) *T { return &v }

// requireCode asserts err matches the sentinel.
func requireCode(t *testing.T, err error, want *errs.Error) {
	t.Helper()
	require.Error(t, err)
	require.Truef(t, errors.Is(err, want), "want code %s, got %v", want.Code, err)
}

func newTenant(id string) store.Tenant {
	return store.Tenant{
		TenantID:        id,
		Name:            "Tenant " + id,
		Status:          store.TenantActive,
		PlanTier:        "pro",
		CreatedAt:       at(0),
		UpdatedAt:       at(time.Second),
		DefaultPolicyID: "pol_default",
		Entitlements: store.Entitlements{
			ModelTiersAllowed:    []string{"small", "large"},
			ModelBackendsAllowed: []string{"*"},
			ToolIDsAllowed:       []string{"tool.echo"},
		},
		Quotas: store.Quotas{
			Runs:    store.RunQuotas{MaxConcurrentRuns: 3, RunCreateQPS: 2.5, RunCreateBurst: 5},
			Tools:   store.ToolQuotas{ToolCallsPerMinute: 60},
			Models:  store.ModelQuotas{TokenBudget: store.TokenBudget{Window: "day", MaxTokens: 1000, MaxCostUSD: 1.25}},
			Storage: store.StorageQuotas{MaxMemoryBytes: 1 << 20, MaxArtifactBytes: 1 << 30},
		},
		Metadata: store.Metadata{Tags: []string{"a", "b"}, BillingAccount: "acct-1"},
	}
}

func newAgent(tenantID, agentID string) store.Agent {
	return store.Agent{
		AgentID:      agentID,
		TenantID:     tenantID,
		Name:         "Agent " + agentID,
		Description:  "does things",
		Version:      1,
		Status:       store.AgentActive,
		ModelRef:     "tier:small",
		Instructions: "be helpful",
		Tools:        []string{"tool.echo", "tool.kv.get"},
		Defaults:     store.AgentDefaults{MaxSteps: 8, TimeoutMs: 30000, OnToolError: "fail", ModelRetries: 2},
		CreatedAt:    at(0),
		UpdatedAt:    at(time.Minute),
	}
}

// newRun is a fully populated queued run.
func newRun(tenantID, agentID string, created time.Time) store.Run {
	return store.Run{
		TenantID:      tenantID,
		AgentID:       agentID,
		RunID:         ids.New("run_"),
		PrincipalID:   "prn_alice",
		Status:        store.RunQueued,
		CreatedAt:     created,
		Input:         store.RunInput{Type: "text", Text: "hello"},
		Context:       json.RawMessage(`{"k":"v"}`),
		Tooling:       store.Tooling{ToolAllowlist: []string{"tool.echo"}},
		RunOptions:    store.RunOptions{Priority: "normal", TimeoutMs: 1000, MaxSteps: 4, StreamEvents: true},
		EventsURL:     "/v1/runs/x/events",
		CorrelationID: "cor_1",
		Traceparent:   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
}

func firstEvent() store.Event {
	return store.Event{
		Type:    store.EventRunCreated,
		Payload: json.RawMessage(`{"status":"queued"}`),
		Trace:   store.EventTrace{Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", SpanID: "b7ad6b7169203331"},
	}
}

// createRun admits r without idempotency and returns the stored run.
func createRun(t *testing.T, s store.Store, r store.Run) store.Run {
	t.Helper()
	res, err := s.CreateRun(context.Background(), store.CreateRunParams{Run: r, FirstEvent: firstEvent(), Priority: 1})
	require.NoError(t, err)
	require.False(t, res.Replayed)
	return res.Run
}

func event(typ string, n int) store.Event {
	return store.Event{Type: typ, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
}

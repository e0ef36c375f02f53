package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The chain's definition: SHA-256 of the record's JSON with Hash empty.
// LegacyHashAudit must keep producing exactly this, or existing chains would no
// longer verify.
func referenceHash(r AuditRecord) string {
	r.Hash = ""
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestHashAuditMatchesTheRecordJSON(t *testing.T) {
	at := time.Date(2026, 11, 28, 23, 1, 2, 123456789, time.FixedZone("x", 3600))
	for name, r := range map[string]AuditRecord{
		"no maps":    {AuditID: "aud_1", Seq: 1, Time: at, TenantID: "tnt_a", Action: "run.create", Outcome: "success"},
		"empty maps": {AuditID: "aud_2", Seq: 2, Time: at, PolicyContext: map[string]any{}, Details: map[string]any{}, PrevHash: "ab", Hash: "stale"},
		"nested and HTML": {AuditID: "aud_3", Seq: 3, Time: at, TenantID: "tnt_b", PrincipalID: "usr_<x>",
			PolicyContext: map[string]any{"z": 1, "a": []any{"<b>&", 2.5, nil}},
			Details:       map[string]any{"route": map[string]any{"backend": "builtin", "n": json.Number("12")}, "s": "é\u2028"},
			CorrelationID: "corr_1", PrevHash: "cd"},
		"on behalf of": {AuditID: "aud_5", Seq: 5, Time: at, TenantID: "tnt_a", PrincipalID: "svc_agentos_orchestrator",
			OnBehalfOf: "usr_alice", Action: "model.invoke", Outcome: "success"},
	} {
		want := referenceHash(r)
		require.Equal(t, want, LegacyHashAudit(r), name)
		pc, _ := json.Marshal(r.PolicyContext)
		det, _ := json.Marshal(r.Details)
		require.Equal(t, want, LegacyHashAuditEncoded(r, pc, det), name)
	}
	bad := AuditRecord{AuditID: "aud_4", Details: map[string]any{"nan": math.NaN()}}
	require.Equal(t, referenceHash(bad), LegacyHashAudit(bad), "a record that cannot be encoded")
}

// modelCallRecord is shaped like a model-policy record (route, usage and
// policy outcome in details).
func modelCallRecord() AuditRecord {
	return AuditRecord{AuditID: "aud_01m8zk9shye18k4vc0pxrnqpd6", Seq: 12345, Time: time.Now(), TenantID: "tnt_demo",
		PrincipalID: "usr_e2e", Action: "model.chat_completions", Target: "tier:fast", Outcome: "success",
		PolicyContext: map[string]any{"consent_tags": []any{}, "data_classification": "", "purpose": "", "region": ""},
		Details: map[string]any{"request_id": "req_01m8zk9shye18k4vc0pt5xy0ag", "operation": "chat",
			"route":          map[string]any{"backend": "builtin", "model": "fast-small", "tier": "fast"},
			"usage":          struct{ In, Out int }{12, 34},
			"cost_usd":       0.000123,
			"policy_outcome": map[string]any{"decision": "allowed", "reasons": []any{}, "redactions": []any{}}},
		CorrelationID: "corr_01m8zk9shxwxgw38z37dzf23q0", PrevHash: "fb348531c04edecea4bbacd7359efa4c66c592f80b18f5191ba4bfe41d64480a"}
}

// TestCanonicalAuditRoundTrip: the canonical bytes of a record decoded
// from its canonical bytes are the same bytes (what verify relies on).
func TestCanonicalAuditRoundTrip(t *testing.T) {
	b, err := CanonicalAudit(modelCallRecord())
	require.NoError(t, err)
	r, err := DecodeCanonical(b)
	require.NoError(t, err)
	again, err := CanonicalAudit(r)
	require.NoError(t, err)
	require.Equal(t, string(b), string(again))
	require.NotContains(t, string(b), `"hash"`)
	require.Contains(t, string(b), `"usage":{"In":12,"Out":34}`)
}

func BenchmarkCanonicalAudit(b *testing.B) {
	r := modelCallRecord()
	for b.Loop() {
		c, err := CanonicalAudit(r)
		if err != nil {
			b.Fatal(err)
		}
		_ = HashCanonical(c)
	}
}

func BenchmarkLegacyHashAudit(b *testing.B) {
	r := modelCallRecord()
	for b.Loop() {
		_ = LegacyHashAudit(r)
	}
}

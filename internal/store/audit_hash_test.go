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

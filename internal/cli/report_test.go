package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReportWriteJSONAndMarkdown(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	r := newReport("validate", n, "local")
	r.Health = append(r.Health, CheckResult{Name: "orchestrator /v1/health", OK: true, DurationMs: 3, Detail: "version 1"})
	r.Smoke = append(r.Smoke, CheckResult{Name: "sample run | SSE", OK: false, Error: "boom"})
	r.Failure = &Failure{Check: "sample run", Message: "boom", Service: "orchestrator", LogLines: []string{"l1"}, NextCommand: "agentos logs orchestrator"}
	r.finish(false, []PhaseResult{{Name: "validate", Status: "failed", DurationMs: 4}})
	dir := filepath.Join(t.TempDir(), "reports")
	require.NoError(t, r.write(dir))
	require.True(t, strings.HasPrefix(filepath.Base(r.Reports.JSON), "validate-"))
	b, err := os.ReadFile(r.Reports.JSON)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(b, &back))
	for _, k := range []string{"schema_version", "action", "ok", "host", "versions", "ports", "endpoints", "seeded", "credentials",
		"default_quotas", "phases", "services", "health", "smoke", "alerts", "failure", "remediation", "reports"} {
		require.Contains(t, back, k)
	}
	require.Equal(t, float64(ReportSchemaVersion), back["schema_version"])
	md, err := os.ReadFile(r.Reports.Markdown)
	require.NoError(t, err)
	require.Contains(t, string(md), "# agentos validate: FAILED")
	require.Contains(t, string(md), `sample run \| SSE`)
	require.Contains(t, string(md), "Next: `agentos logs orchestrator`")
	require.NotContains(t, string(b), "token\":", "reports never contain secrets")

	// Same action in the same second: a new file, not an overwrite.
	first := r.Reports.JSON
	require.NoError(t, r.write(dir))
	require.NotEqual(t, first, r.Reports.JSON)
	require.FileExists(t, first)
}

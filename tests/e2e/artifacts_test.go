package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/blob/blobtest"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestArtifactsFromHTTPFetch runs a real node whose agent fetches a body
// larger than the fetch tool's output cap: the whole body becomes an
// artifact of the run, listed on it and downloadable with the recorded
// size and SHA-256; another tenant gets 404 for it; after the retention
// the sweeper deletes it (bytes, record) and audits both ends. It runs
// once on the embedded filesystem store and once on a real S3-compatible
// server (SeaweedFS, when AGENTOS_TEST_S3_SERVER names its binary).
func TestArtifactsFromHTTPFetch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Run("fs", func(t *testing.T) {
		t.Parallel()
		testArtifactsFromHTTPFetch(t, nil)
	})
	t.Run("s3", func(t *testing.T) {
		t.Parallel()
		srv := blobtest.StartS3(t)
		testArtifactsFromHTTPFetch(t, []string{"AGENTOS_ARTIFACT_STORE=s3", "AGENTOS_ARTIFACT_S3_ENDPOINT=" + srv.Endpoint,
			"AGENTOS_ARTIFACT_S3_BUCKET=agentos-e2e", "AGENTOS_ARTIFACT_S3_ACCESS_KEY=" + srv.AccessKey,
			"AGENTOS_ARTIFACT_S3_SECRET_KEY=" + srv.SecretKey, "AGENTOS_ARTIFACT_S3_PREFIX=node-a/"})
	})
}

func testArtifactsFromHTTPFetch(t *testing.T, env []string) {
	// 2 MiB + 7 bytes of random data: past the tool's 1 MiB output cap.
	body := make([]byte, 2<<20+7)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(body)
	want := hex.EncodeToString(sum[:])
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-agentos-test")
		_, _ = w.Write(body)
	}))
	t.Cleanup(upstream.Close)

	node := testnode.Start(t, testnode.Options{Env: append([]string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1",
		"AGENTOS_ARTIFACT_RETENTION=30s", "AGENTOS_ARTIFACT_SWEEP_INTERVAL=1s"}, env...)})
	base := node.URL("orchestrator")
	admin := map[string]string{"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token, "X-Tenant-Id": "tnt_demo"}
	code, out := runsJSON(t, "PUT", base+"/v1/admin/agents/agt_fetcher", admin, map[string]any{"agent": map[string]any{
		"name": "fetcher", "model_ref": "tier:fast", "instructions": "Fetch the URL the user gives.",
		"tools": []string{"tool.http.fetch"}, "defaults": map[string]any{"max_steps": 4, "timeout_ms": 60000}}})
	require.Equal(t, 201, code, out)
	code, out = runsJSON(t, "POST", base+"/v1/admin/tenants", admin, map[string]any{"tenant_id": "tnt_art_b", "name": "B"})
	require.Equal(t, 201, code, out)

	user := map[string]string{"X-Tenant-Id": "tnt_demo"}
	other := map[string]string{"X-Tenant-Id": "tnt_art_b"}
	code, out = runsJSON(t, "POST", base+"/v1/agents/agt_fetcher/runs", user, map[string]any{"input": upstream.URL + "/data.bin"})
	require.Equal(t, 201, code, out)
	runID := out["run"].(map[string]any)["run_id"].(string)
	require.Eventually(t, func() bool {
		_, out := runsJSON(t, "GET", base+"/v1/runs/"+runID, user, nil)
		st := out["run"].(map[string]any)["status"]
		require.NotContains(t, []any{"failed", "canceled"}, st, "%v\n%s", out, tail(node.Log("orchestrator"), 3000))
		return st == "completed"
	}, 60*time.Second, 50*time.Millisecond)

	// The tool's output names the artifact instead of carrying the body.
	code, out = runsJSON(t, "GET", base+"/v1/runs/"+runID+"/events", map[string]string{"X-Tenant-Id": "tnt_demo", "Accept": "application/json"}, nil)
	require.Equal(t, 200, code, out)
	var toolOut map[string]any
	for _, e := range out["events"].([]any) {
		ev := e.(map[string]any)
		if ev["type"] == "agentos.tool.call.completed" {
			toolOut = ev["payload"].(map[string]any)["output"].(map[string]any)
		}
	}
	require.NotNil(t, toolOut, "the run called the fetch tool")
	ref := toolOut["artifact"].(map[string]any)
	require.Equal(t, "", toolOut["body"])
	require.Equal(t, false, toolOut["truncated"])
	require.Equal(t, want, ref["sha256"])
	artID := ref["artifact_id"].(string)

	code, out = runsJSON(t, "GET", base+"/v1/runs/"+runID+"/artifacts", user, nil)
	require.Equal(t, 200, code, out)
	list := out["artifacts"].([]any)
	require.Len(t, list, 1)
	a := list[0].(map[string]any)
	require.Equal(t, artID, a["artifact_id"])
	require.EqualValues(t, len(body), a["size"])
	require.Equal(t, want, a["sha256"])
	require.Equal(t, "application/x-agentos-test", a["content_type"])
	require.Equal(t, "data.bin", a["name"])
	require.NotEmpty(t, a["step_id"])
	require.NotNil(t, a["expires_at"])

	code, out = runsJSON(t, "GET", base+"/v1/artifacts/"+artID, user, nil)
	require.Equal(t, 200, code, out)
	require.Equal(t, want, out["artifact"].(map[string]any)["sha256"])

	resp, got := download(t, base+"/v1/artifacts/"+artID+"/content", user, "")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "application/x-agentos-test", resp.Header.Get("Content-Type"))
	require.Equal(t, strconv.Itoa(len(body)), resp.Header.Get("Content-Length"))
	require.Equal(t, `"`+want+`"`, resp.Header.Get("ETag"))
	require.Equal(t, "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":", resp.Header.Get("Repr-Digest"))
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	gotSum := sha256.Sum256(got)
	require.Equal(t, want, hex.EncodeToString(gotSum[:]), "the download is the fetched body, byte for byte")
	resp, _ = download(t, base+"/v1/artifacts/"+artID+"/content", user, `"`+want+`"`)
	require.Equal(t, http.StatusNotModified, resp.StatusCode)

	// Tenant B: the artifact, its content and the run's list do not exist.
	for _, path := range []string{"/v1/artifacts/" + artID, "/v1/artifacts/" + artID + "/content", "/v1/runs/" + runID + "/artifacts"} {
		code, out = runsJSON(t, "GET", base+path, other, nil)
		require.Equal(t, 404, code, "%s: %v", path, out)
		require.Equal(t, "not_found", out["error"].(map[string]any)["code"])
	}

	// Retention: the sweeper deletes it after 30 s, and both ends are audited.
	require.Eventually(t, func() bool {
		code, _ := runsJSON(t, "GET", base+"/v1/artifacts/"+artID, user, nil)
		return code == 404
	}, 90*time.Second, 500*time.Millisecond)
	resp, _ = download(t, base+"/v1/artifacts/"+artID+"/content", user, "")
	require.Equal(t, 404, resp.StatusCode)
	code, out = runsJSON(t, "GET", base+"/v1/admin/audit?limit=1000", admin, nil)
	require.Equal(t, 200, code, out)
	actions := map[string]bool{}
	for _, rec := range out["records"].([]any) {
		m := rec.(map[string]any)
		if m["target"] == "artifact/"+artID {
			actions[fmt.Sprint(m["action"])] = true
		}
	}
	require.Equal(t, map[string]bool{"artifact.create": true, "artifact.delete": true}, actions)
}

func download(t *testing.T, url string, hdr map[string]string, ifNoneMatch string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

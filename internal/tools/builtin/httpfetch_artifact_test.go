package builtin_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/artifact"
	"github.com/nexixai/agentos/internal/blob/fsblob"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/tools/toolstest"
)

func newArtifacts(t *testing.T, maxBytes, quota int64) *artifact.Service {
	t.Helper()
	db, err := sqlite.Open(context.Background(), t.TempDir()+"/a.db")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	blobs, err := fsblob.Open(t.TempDir())
	require.NoError(t, err)
	svc, err := artifact.New(artifact.Config{Store: db, Blobs: blobs, MaxBytes: maxBytes,
		Quota: func(context.Context, string) (int64, error) { return quota, nil }})
	require.NoError(t, err)
	return svc
}

// TestHTTPFetchStoresLargeBodies: a body past the threshold is stored whole
// as an artifact of the run, and the output names it instead of carrying
// a cut body; shorter bodies stay inline as before.
func TestHTTPFetchStoresLargeBodies(t *testing.T) {
	t.Parallel()
	srv := newFetchServer(t) // /big answers 1000 bytes
	whole := strings.Repeat("0123456789", 100)
	sum := sha256.Sum256([]byte(whole))

	t.Run("above the threshold", func(t *testing.T) {
		t.Parallel()
		svc := newArtifacts(t, 0, 0)
		cfg := builtin.HTTPFetchConfig{Allow: allow(t, "127.0.0.1"), MaxBytes: 25, Artifacts: svc}
		out, err := fetch(t, cfg, map[string]any{"url": srv.URL + "/big"})
		require.NoError(t, err)
		require.Equal(t, "", out["body"], "the body is in the artifact, not the output")
		require.Equal(t, false, out["truncated"])
		ref := out["artifact"].(map[string]any)
		require.EqualValues(t, 1000, ref["size"])
		require.Equal(t, hex.EncodeToString(sum[:]), ref["sha256"])
		require.Equal(t, "big", ref["name"])
		id := ref["artifact_id"].(string)
		require.Equal(t, "/v1/artifacts/"+id+"/content", ref["url"])

		a, rc, err := svc.Open(context.Background(), toolstest.DefaultTenant, id)
		require.NoError(t, err)
		b, _ := io.ReadAll(rc)
		require.NoError(t, rc.Close())
		require.Equal(t, whole, string(b))
		require.Equal(t, "run_toolstest", a.RunID)
		require.Equal(t, "tcall_toolstest", a.ToolCallID)
	})

	t.Run("below the threshold stays inline", func(t *testing.T) {
		t.Parallel()
		svc := newArtifacts(t, 0, 0)
		cfg := builtin.HTTPFetchConfig{Allow: allow(t, "127.0.0.1"), Artifacts: svc}
		out, err := fetch(t, cfg, map[string]any{"url": srv.URL + "/big"})
		require.NoError(t, err)
		require.Equal(t, whole, out["body"])
		require.NotContains(t, out, "artifact")
	})

	t.Run("explicit threshold below the cap", func(t *testing.T) {
		t.Parallel()
		svc := newArtifacts(t, 0, 0)
		cfg := builtin.HTTPFetchConfig{Allow: allow(t, "127.0.0.1"), Artifacts: svc, ArtifactThreshold: 999}
		out, err := fetch(t, cfg, map[string]any{"url": srv.URL + "/big"})
		require.NoError(t, err)
		require.Contains(t, out, "artifact")
	})

	t.Run("artifact cut at its size limit", func(t *testing.T) {
		t.Parallel()
		svc := newArtifacts(t, 600, 0)
		cfg := builtin.HTTPFetchConfig{Allow: allow(t, "127.0.0.1"), MaxBytes: 25, Artifacts: svc}
		out, err := fetch(t, cfg, map[string]any{"url": srv.URL + "/big"})
		require.NoError(t, err)
		require.Equal(t, true, out["truncated"])
		require.EqualValues(t, 600, out["artifact"].(map[string]any)["size"])
	})

	t.Run("quota exceeded falls back to the cut body", func(t *testing.T) {
		t.Parallel()
		svc := newArtifacts(t, 0, 500)
		cfg := builtin.HTTPFetchConfig{Allow: allow(t, "127.0.0.1"), MaxBytes: 25, Artifacts: svc}
		out, err := fetch(t, cfg, map[string]any{"url": srv.URL + "/big"})
		require.NoError(t, err)
		require.Equal(t, "0123456789012345678901234", out["body"])
		require.Equal(t, true, out["truncated"])
		require.NotContains(t, out, "artifact")
		require.Equal(t, "quota_exceeded", out["artifact_error"].(map[string]any)["code"])
	})
}

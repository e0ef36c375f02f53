package conformance

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// requiredSpecs are the services whose spec and examples must exist.
var requiredSpecs = []string{"agent-orchestrator"}

// TestSpecsAreValid loads every docs/api/<service>/openapi.yaml: each must
// be a valid OpenAPI document the harness can route.
func TestSpecsAreValid(t *testing.T) {
	t.Parallel()
	root := RepoRoot(t)
	for _, svc := range requiredSpecs {
		_, err := os.Stat(SpecPath(root, svc))
		require.NoError(t, err, "spec of %s is required", svc)
	}
	specs, err := filepath.Glob(filepath.Join(root, "docs", "api", "*", "openapi.yaml"))
	require.NoError(t, err)
	for _, p := range specs {
		svc := filepath.Base(filepath.Dir(p))
		t.Run(svc, func(t *testing.T) {
			t.Parallel()
			s := LoadSpec(t, svc)
			require.NotZero(t, s.Doc.Paths.Len(), "spec has no paths")
		})
	}
}

// TestExamples validates the examples of every service that has an
// examples/ folder, following the index.yaml convention of README.md.
func TestExamples(t *testing.T) {
	t.Parallel()
	root := RepoRoot(t)
	for _, svc := range requiredSpecs {
		_, err := os.Stat(filepath.Join(root, "docs", "api", svc, "examples", ExampleIndexFile))
		require.NoError(t, err, "examples of %s are required", svc)
	}
	dirs, err := filepath.Glob(filepath.Join(root, "docs", "api", "*", "examples"))
	require.NoError(t, err)
	for _, dir := range dirs {
		svc := filepath.Base(filepath.Dir(dir))
		t.Run(svc, func(t *testing.T) {
			t.Parallel()
			_, err := os.Stat(filepath.Join(dir, ExampleIndexFile))
			require.NoError(t, err, "%s has examples but no %s mapping them", dir, ExampleIndexFile)
			s := LoadSpec(t, svc)
			s.ValidateExamples(t, dir)
		})
	}
}

package modelpolicy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDefaultCatalogue(t *testing.T) {
	t.Parallel()
	c := DefaultCatalogue()
	require.Equal(t, []string{"balanced", "embed", "fast", "premium"}, c.AllTiers())
	m, ok := c.Model("builtin/echo-fast")
	require.True(t, ok)
	require.Equal(t, "echo-fast", m.Upstream)
	require.Contains(t, c.Policies, "pol_default")
	require.Equal(t, []string{"builtin/embed-small"}, c.TierChain("embed"))
}

func TestCatalogueErrors(t *testing.T) {
	t.Parallel()
	for name, y := range map[string]string{
		"no backends":     `models: []`,
		"bad type":        "backends: [{name: x, type: grpc}]",
		"no base url":     "backends: [{name: x, type: openai}]",
		"unknown backend": "backends: [{name: b, type: builtin}]\nmodels: [{name: m, backend: nope}]",
		"unknown field":   "backends: [{name: b, type: builtin, colour: red}]",
		"bad tier model":  "backends: [{name: b, type: builtin}]\ntiers: {fast: [b/none]}",
		"bad canary":      "backends: [{name: b, type: builtin}]\nmodels: [{name: m, backend: b}]\ncanaries: [{match: 'tier:fast', model: b/m, percent: 120}]",
		"bad policy":      "backends: [{name: b, type: builtin}]\npolicies: {p: {input: {email: shred}}}",
		"bad cel":         "backends: [{name: b, type: builtin}]\npolicies: {p: {rules: [{expression: 'request.'}]}}",
		"bad default":     "backends: [{name: b, type: builtin}]\ndefault_policy: nope",
		"anthropic embed": "backends: [{name: a, type: anthropic}]\nmodels: [{name: m, backend: a, capabilities: [embed]}]",
		"dup model":       "backends: [{name: b, type: builtin}]\nmodels: [{name: m, backend: b}, {name: m, backend: b}]",
	} {
		_, err := ParseCatalogue([]byte(y))
		require.Error(t, err, name)
	}
	_, err := LoadCatalogue(filepath.Join(t.TempDir(), "missing.yaml"))
	require.Error(t, err)
}

func TestShippedCatalogues(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../configs/model-policy*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		c, err := LoadCatalogue(f)
		require.NoError(t, err, f)
		provs, err := c.BuildProviders(nil)
		require.NoError(t, err, f)
		require.Len(t, provs, len(c.Backends))
	}
}

func TestAPIKeyFromEnvAndFile(t *testing.T) {
	t.Parallel()
	key := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(key, []byte("sk-file\n"), 0o600))
	c, err := ParseCatalogue([]byte("backends:\n- {name: o, type: openai, base_url: 'http://127.0.0.1:1/v1', api_key_env: MY_KEY}\n- {name: f, type: anthropic, api_key_file: " + key + "}\n"))
	require.NoError(t, err)
	c.Env = func(k string) (string, bool) { return "sk-env", k == "MY_KEY" }
	_, err = c.BuildProviders(nil)
	require.NoError(t, err)
}

func FuzzParseCatalogue(f *testing.F) {
	f.Add([]byte(DefaultCatalogueYAML))
	f.Add([]byte("backends: [{name: b, type: builtin}]\nmodels: [{name: m, backend: b, tiers: [fast]}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCatalogue(b)
		if err != nil {
			return
		}
		for _, m := range c.Models {
			if _, ok := c.Model(m.ID()); !ok {
				t.Fatalf("model %s not indexed", m.ID())
			}
		}
		if _, ok := c.Policies[c.DefaultPolicy]; !ok {
			t.Fatal("default policy missing")
		}
	})
}

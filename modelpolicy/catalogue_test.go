package modelpolicy

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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

// Each bad catalogue fails with the message naming its field (the first
// problem in file order).
func TestCatalogueErrors(t *testing.T) {
	t.Parallel()
	const b = "backends: [{name: b, type: builtin}]\n"
	const bm = b + "models: [{name: m, backend: b}]\n"
	for name, tc := range map[string]struct{ yaml, want string }{
		"no backends":        {`models: []`, `backends: at least one backend is required`},
		"bad type":           {"backends: [{name: x, type: grpc}]", `backends[0].type: "grpc" is not builtin, openai, anthropic or worker`},
		"worker no labels":   {"backends: [{name: w, type: worker, endpoint: llama}]", `backends[0].placement.labels: required for type worker (the labels of the workers that serve it)`},
		"worker bad label":   {"backends: [{name: w, type: worker, endpoint: llama, placement: {labels: {'GPU!': a100}}}]", `backends[0].placement.labels: label key "GPU!": want lowercase letters, digits, _ . - (1-63, starting with a letter or digit)`},
		"worker no endpoint": {"backends: [{name: w, type: worker, placement: {labels: {gpu: a100}}}]", `backends[0].endpoint: required for type worker (a worker's --model-endpoint name)`},
		"no base url":        {"backends: [{name: x, type: openai}]", `backends[0].base_url: required for type openai`},
		"bad name":           {"backends: [{name: 'a b', type: builtin}]", `backends[0].name: must be non-empty without '/' or spaces`},
		"dup backend":        {"backends: [{name: b, type: builtin}, {name: b, type: grpc}]", `backends[1].name: duplicate backend "b"`},
		"negative timeout":   {"backends: [{name: b, type: builtin, timeout: -1s}]", `backends[0].timeout: must not be negative`},
		"unknown backend":    {b + "models: [{name: m, backend: nope}]", `models[0].backend: unknown backend "nope"`},
		"no model name":      {b + "models: [{backend: b}]", `models[0].name: required`},
		"bad capability":     {b + "models: [{name: m, backend: b, capabilities: [vision]}]", `models[0].capabilities: "vision" is not chat or embed`},
		"negative price":     {b + "models: [{name: m, backend: b, price_per_1k_input_usd: -1}]", `models[0]: prices must not be negative`},
		"anthropic embed":    {"backends: [{name: a, type: anthropic}]\nmodels: [{name: m, backend: a, capabilities: [embed]}]", `models[0].capabilities: anthropic backends have no embeddings`},
		"dup model":          {b + "models: [{name: m, backend: b}, {name: m, backend: b}]", `models[1]: duplicate model "b/m"`},
		"unknown field":      {"backends: [{name: b, type: builtin, colour: red}]", "parse: yaml: unmarshal errors:\n  line 1: field colour not found in type modelpolicy.BackendConfig"},
		"bad fallback":       {b + "models: [{name: m, backend: b, fallbacks: [b/x]}]", `models.b/m.fallbacks: unknown model "b/x" (model ids are <backend>/<name>)`},
		"bad tier model":     {b + "tiers: {fast: [b/none]}", `tiers.fast: unknown model "b/none" (model ids are <backend>/<name>)`},
		"canary model":       {bm + "canaries: [{model: b/zz, match: x}]", `canaries[0].model: unknown model "b/zz" (model ids are <backend>/<name>)`},
		"canary match":       {bm + "canaries: [{model: b/m}]", `canaries[0].match: required`},
		"bad canary":         {bm + "canaries: [{match: 'tier:fast', model: b/m, percent: 120}]", `canaries[0].percent: must be within 0..100`},
		"canary by":          {bm + "canaries: [{model: b/m, match: x, by: user}]", `canaries[0].by: "user" is not tenant or agent`},
		"empty policy":       {b + "policies: {p: }", `policies.p: empty policy`},
		"bad policy":         {b + "policies: {p: {input: {email: shred}}}", `policies.p: policy p: input.email: unknown action "shred" (want allow, redact or block)`},
		"bad cel":            {b + "policies: {p: {rules: [{expression: 'request.'}]}}", "policies.p: policy p: rule rule_1: ERROR: <input>:1:9: Syntax error: no viable alternative at input '.'\n | request.\n | ........^"},
		"bad default":        {b + "default_policy: nope", `default_policy: unknown policy "nope"`},
	} {
		_, err := ParseCatalogue([]byte(tc.yaml))
		require.EqualError(t, err, tc.want, name)
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

// A worker backend has no provider of its own: without the bus (which
// gives it one through Config.Providers) model-policy refuses to start.
func TestWorkerBackendNeedsTheBus(t *testing.T) {
	t.Parallel()
	cat, err := ParseCatalogue([]byte(`
backends:
  - {name: gpu, type: worker, endpoint: llama, placement: {labels: {gpu: a100}}}
models:
  - {name: llama, backend: gpu}
`))
	require.NoError(t, err)
	require.Len(t, cat.WorkerBackends(), 1)
	_, err = New(Config{Store: openDB(t), Authenticate: testAuth, Registry: prometheus.NewRegistry(), Catalogue: cat,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.ErrorContains(t, err, "backend gpu is served by worker nodes: model-policy needs the NATS bus for it (set AGENTOS_BUS_URL)")
}

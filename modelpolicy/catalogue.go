package modelpolicy

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/modelpolicy/policy"
	"github.com/nexixai/agentos/modelpolicy/providers"
	"github.com/nexixai/agentos/modelpolicy/providers/anthropic"
	"github.com/nexixai/agentos/modelpolicy/providers/builtin"
	"github.com/nexixai/agentos/modelpolicy/providers/openai"
	"github.com/nexixai/agentos/modelpolicy/router"
)

// Model tiers (CONTRACT §5).
const (
	TierFast     = "fast"
	TierBalanced = "balanced"
	TierPremium  = "premium"
	TierEmbed    = "embed"
)

// Backend types.
const (
	BackendBuiltin   = "builtin"
	BackendOpenAI    = "openai"
	BackendAnthropic = "anthropic"
	// BackendWorker is a model endpoint fronted by worker nodes
	// (providers/workerpool); model-policy needs the NATS bus for it.
	BackendWorker = "worker"
)

// BackendConfig is one model backend of the catalogue.
type BackendConfig struct {
	// Name is the backend's name in model ids and entitlements (e.g. vllm).
	Name string `yaml:"name"`
	// Type is builtin, openai (any OpenAI-compatible server) or anthropic.
	Type string `yaml:"type"`
	// BaseURL: for openai including /v1 (http://127.0.0.1:8000/v1); for
	// anthropic the API root (https://api.anthropic.com).
	BaseURL string `yaml:"base_url"`
	// BaseURLEnv names an environment variable that overrides BaseURL.
	BaseURLEnv string `yaml:"base_url_env"`
	// APIKey is the key itself (prefer APIKeyEnv or APIKeyFile).
	APIKey string `yaml:"api_key"`
	// APIKeyEnv names the environment variable holding the key.
	APIKeyEnv string `yaml:"api_key_env"`
	// APIKeyFile names a file holding the key.
	APIKeyFile string `yaml:"api_key_file"`
	// Headers are extra request headers.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one call (default 60s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxTokensField is openai's output-limit field (max_tokens or max_completion_tokens).
	MaxTokensField string `yaml:"max_tokens_field"`
	// NoStreamUsage: the server rejects stream_options (openai only).
	NoStreamUsage bool `yaml:"no_stream_usage"`
	// Dimensions of builtin embeddings (default 64).
	Dimensions int `yaml:"dimensions"`
	// Placement (worker only): the labels a worker needs to take the calls.
	Placement struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"placement"`
	// Endpoint (worker only): the workers' model endpoint name
	// (`agentos serve worker --model-endpoint NAME=KIND:URL`).
	Endpoint string `yaml:"endpoint"`
}

// ModelConfig is one model of the catalogue. Its model_id is
// "<backend>/<name>".
type ModelConfig struct {
	Name    string `yaml:"name"`
	Backend string `yaml:"backend"`
	// Upstream is the backend's own model name (default Name).
	Upstream string `yaml:"upstream_model"`
	// Capabilities: chat and/or embed (default chat).
	Capabilities        []string `yaml:"capabilities"`
	Tiers               []string `yaml:"tiers"`
	ContextWindowTokens int      `yaml:"context_window_tokens"`
	MaxOutputTokens     int      `yaml:"max_output_tokens"`
	// Prices in USD per 1000 tokens.
	PriceInputPer1K  float64 `yaml:"price_per_1k_input_usd"`
	PriceOutputPer1K float64 `yaml:"price_per_1k_output_usd"`
	// LatencyMs is the expected latency used for requirements.max_latency_ms
	// until calls have been observed.
	LatencyMs int `yaml:"latency_ms"`
	// Fallbacks are model ids tried, in order, after this model when it is
	// named directly.
	Fallbacks []string `yaml:"fallbacks"`

	id string // "<backend>/<name>", set when the catalogue is validated
}

// ID returns "<backend>/<name>".
func (m ModelConfig) ID() string {
	if m.id != "" {
		return m.id
	}
	return m.Backend + "/" + m.Name
}

// Has reports whether the model has capability c.
func (m ModelConfig) Has(c string) bool { return slices.Contains(m.Capabilities, c) }

// Canary sends Percent of the tenants (or agents) calling Match (a model_ref
// such as "tier:balanced" or a model id) to Model first.
type Canary struct {
	Name    string  `yaml:"name"`
	Match   string  `yaml:"match"`
	Model   string  `yaml:"model"`
	Percent float64 `yaml:"percent"`
	// By is tenant (default) or agent.
	By string `yaml:"by"`
}

// Catalogue is model-policy's configuration: backends, models, tier chains,
// canaries, policies and the circuit breaker.
type Catalogue struct {
	Backends []BackendConfig `yaml:"backends"`
	Models   []ModelConfig   `yaml:"models"`
	// Tiers maps a tier to its ordered chain of model ids. A tier not
	// listed uses every model having it, in catalogue order.
	Tiers    map[string][]string `yaml:"tiers"`
	Canaries []Canary            `yaml:"canaries"`
	// Policies are named rulesets; the built-in pol_default, pol_strict and
	// pol_permissive exist unless redefined.
	Policies map[string]*policy.Policy `yaml:"policies"`
	// DefaultPolicy applies to tenants without default_policy_id (default pol_default).
	DefaultPolicy string `yaml:"default_policy"`
	Breaker       struct {
		FailureThreshold int           `yaml:"failure_threshold"`
		Cooldown         time.Duration `yaml:"cooldown"`
	} `yaml:"breaker"`

	// Env looks up environment variables (default os.LookupEnv); tests set it.
	Env func(string) (string, bool) `yaml:"-"`

	models map[string]*ModelConfig
}

// DefaultCatalogueYAML is the offline catalogue: builtin models only.
const DefaultCatalogueYAML = `
backends:
  - name: builtin
    type: builtin
models:
  - name: echo-fast
    backend: builtin
    capabilities: [chat]
    tiers: [fast]
    context_window_tokens: 8192
    max_output_tokens: 1024
    latency_ms: 1
  - name: echo-balanced
    backend: builtin
    capabilities: [chat]
    tiers: [balanced]
    context_window_tokens: 32768
    max_output_tokens: 2048
    latency_ms: 1
  - name: echo-premium
    backend: builtin
    capabilities: [chat]
    tiers: [premium]
    context_window_tokens: 131072
    max_output_tokens: 4096
    latency_ms: 1
  - name: embed-small
    backend: builtin
    capabilities: [embed]
    tiers: [embed]
    context_window_tokens: 8192
    latency_ms: 1
tiers:
  fast: [builtin/echo-fast]
  balanced: [builtin/echo-balanced, builtin/echo-fast]
  premium: [builtin/echo-premium, builtin/echo-balanced]
  embed: [builtin/embed-small]
default_policy: pol_default
`

// DefaultCatalogue returns the offline builtin catalogue.
func DefaultCatalogue() *Catalogue {
	c, err := ParseCatalogue([]byte(DefaultCatalogueYAML))
	if err != nil {
		panic(err)
	}
	return c
}

// LoadCatalogue reads and validates a YAML catalogue file.
func LoadCatalogue(path string) (*Catalogue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model catalogue: %w", err)
	}
	c, err := ParseCatalogue(b)
	if err != nil {
		return nil, fmt.Errorf("model catalogue %s: %w", path, err)
	}
	return c, nil
}

// ParseCatalogue parses and validates a YAML catalogue. Unknown fields are
// errors (a typo must not silently drop a policy).
func ParseCatalogue(b []byte) (*Catalogue, error) {
	var c Catalogue
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// validate checks the catalogue section by section, in file order, and
// fills the defaults (capabilities, upstream names, token limits, canary
// names, built-in policies). The first problem found is returned, naming
// its field.
func (c *Catalogue) validate() error {
	backends, err := c.validateBackends()
	if err != nil {
		return err
	}
	if err := c.validateModels(backends); err != nil {
		return err
	}
	if err := c.validateRoutes(); err != nil {
		return err
	}
	if err := c.validateCanaries(); err != nil {
		return err
	}
	return c.validatePolicies()
}

// validateBackends checks every backend and returns them by name.
func (c *Catalogue) validateBackends() (map[string]BackendConfig, error) {
	if len(c.Backends) == 0 {
		return nil, fmt.Errorf("backends: at least one backend is required")
	}
	backends := map[string]BackendConfig{}
	for i, b := range c.Backends {
		if err := checkBackend(i, b, backends); err != nil {
			return nil, err
		}
		backends[b.Name] = b
	}
	return backends, nil
}

// checkBackend checks backends[i]; seen holds the backends before it.
func checkBackend(i int, b BackendConfig, seen map[string]BackendConfig) error {
	if b.Name == "" || strings.ContainsAny(b.Name, "/ ") {
		return fmt.Errorf("backends[%d].name: must be non-empty without '/' or spaces", i)
	}
	if _, dup := seen[b.Name]; dup {
		return fmt.Errorf("backends[%d].name: duplicate backend %q", i, b.Name)
	}
	switch b.Type {
	case BackendBuiltin, BackendAnthropic:
	case BackendOpenAI:
		if b.BaseURL == "" && b.BaseURLEnv == "" {
			return fmt.Errorf("backends[%d].base_url: required for type openai", i)
		}
	case BackendWorker:
		if len(b.Placement.Labels) == 0 {
			return fmt.Errorf("backends[%d].placement.labels: required for type worker (the labels of the workers that serve it)", i)
		}
		if err := store.ValidateLabels(fmt.Sprintf("backends[%d].placement.labels", i), b.Placement.Labels); err != nil {
			return errors.New(errs.As(err).Message) // the message names the field, as the others here do
		}
		if b.Endpoint == "" {
			return fmt.Errorf("backends[%d].endpoint: required for type worker (a worker's --model-endpoint name)", i)
		}
	default:
		return fmt.Errorf("backends[%d].type: %q is not builtin, openai, anthropic or worker", i, b.Type)
	}
	if b.Timeout < 0 {
		return fmt.Errorf("backends[%d].timeout: must not be negative", i)
	}
	return nil
}

// validateModels checks every model against its backend, fills its
// defaults and indexes the catalogue by model id.
func (c *Catalogue) validateModels(backends map[string]BackendConfig) error {
	c.models = map[string]*ModelConfig{}
	for i := range c.Models {
		m := &c.Models[i]
		if err := checkModel(i, m, backends); err != nil {
			return err
		}
		m.id = ""
		m.id = m.ID()
		if _, dup := c.models[m.ID()]; dup {
			return fmt.Errorf("models[%d]: duplicate model %q", i, m.ID())
		}
		c.models[m.ID()] = m
	}
	return nil
}

// checkModel checks models[i] and fills its defaults: capability chat,
// upstream name = name, an 8192-token context window and, for chat, 1024
// output tokens.
func checkModel(i int, m *ModelConfig, backends map[string]BackendConfig) error {
	if m.Name == "" {
		return fmt.Errorf("models[%d].name: required", i)
	}
	b, ok := backends[m.Backend]
	if !ok {
		return fmt.Errorf("models[%d].backend: unknown backend %q", i, m.Backend)
	}
	if len(m.Capabilities) == 0 {
		m.Capabilities = []string{"chat"}
	}
	for _, cap := range m.Capabilities {
		if cap != "chat" && cap != "embed" {
			return fmt.Errorf("models[%d].capabilities: %q is not chat or embed", i, cap)
		}
	}
	if b.Type == BackendAnthropic && m.Has("embed") {
		return fmt.Errorf("models[%d].capabilities: anthropic backends have no embeddings", i)
	}
	if m.Upstream == "" {
		m.Upstream = m.Name
	}
	if m.ContextWindowTokens <= 0 {
		m.ContextWindowTokens = 8192
	}
	if m.MaxOutputTokens <= 0 && m.Has("chat") {
		m.MaxOutputTokens = 1024
	}
	if m.PriceInputPer1K < 0 || m.PriceOutputPer1K < 0 {
		return fmt.Errorf("models[%d]: prices must not be negative", i)
	}
	return nil
}

// checkModelRef fails when id, found at where, names no model of the
// catalogue.
func (c *Catalogue) checkModelRef(where, id string) error {
	if _, ok := c.models[id]; !ok {
		return fmt.Errorf("%s: unknown model %q (model ids are <backend>/<name>)", where, id)
	}
	return nil
}

// validateRoutes checks that models' fallbacks and tier chains name known
// models (tiers in name order, so the error reported is always the same).
func (c *Catalogue) validateRoutes() error {
	for _, m := range c.Models {
		for _, f := range m.Fallbacks {
			if err := c.checkModelRef("models."+m.ID()+".fallbacks", f); err != nil {
				return err
			}
		}
	}
	for _, tier := range slices.Sorted(maps.Keys(c.Tiers)) {
		for _, id := range c.Tiers[tier] {
			if err := c.checkModelRef("tiers."+tier, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// validateCanaries checks every canary and names the unnamed ones
// canary_<n>.
func (c *Catalogue) validateCanaries() error {
	for i := range c.Canaries {
		cn := &c.Canaries[i]
		if err := c.checkModelRef(fmt.Sprintf("canaries[%d].model", i), cn.Model); err != nil {
			return err
		}
		switch {
		case cn.Match == "":
			return fmt.Errorf("canaries[%d].match: required", i)
		case cn.Percent < 0 || cn.Percent > 100:
			return fmt.Errorf("canaries[%d].percent: must be within 0..100", i)
		case cn.By != "" && cn.By != "tenant" && cn.By != "agent":
			return fmt.Errorf("canaries[%d].by: %q is not tenant or agent", i, cn.By)
		}
		if cn.Name == "" {
			cn.Name = fmt.Sprintf("canary_%d", i+1)
		}
	}
	return nil
}

// validatePolicies adds the built-in policies the catalogue does not
// override, compiles every policy (in id order) and checks default_policy
// (pol_default when unset).
func (c *Catalogue) validatePolicies() error {
	if c.Policies == nil {
		c.Policies = map[string]*policy.Policy{}
	}
	for id, p := range policy.DefaultPolicies() {
		if _, ok := c.Policies[id]; !ok {
			c.Policies[id] = p
		}
	}
	for _, id := range slices.Sorted(maps.Keys(c.Policies)) {
		p := c.Policies[id]
		if p == nil {
			return fmt.Errorf("policies.%s: empty policy", id)
		}
		p.ID = id
		if err := p.Compile(); err != nil {
			return fmt.Errorf("policies.%s: %w", id, err)
		}
	}
	if c.DefaultPolicy == "" {
		c.DefaultPolicy = "pol_default"
	}
	if _, ok := c.Policies[c.DefaultPolicy]; !ok {
		return fmt.Errorf("default_policy: unknown policy %q", c.DefaultPolicy)
	}
	return nil
}

// Model returns the model with id "<backend>/<name>".
func (c *Catalogue) Model(id string) (*ModelConfig, bool) {
	m, ok := c.models[id]
	return m, ok
}

// TierChain returns the ordered model ids of tier.
func (c *Catalogue) TierChain(tier string) []string {
	if chain, ok := c.Tiers[tier]; ok {
		return chain
	}
	var out []string
	for _, m := range c.Models {
		if slices.Contains(m.Tiers, tier) {
			out = append(out, m.ID())
		}
	}
	return out
}

// AllTiers lists every tier named by a model or a chain.
func (c *Catalogue) AllTiers() []string {
	var out []string
	add := func(t string) {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	for _, m := range c.Models {
		for _, t := range m.Tiers {
			add(t)
		}
	}
	for t := range c.Tiers {
		add(t)
	}
	slices.Sort(out)
	return out
}

func (c *Catalogue) lookupEnv(k string) (string, bool) {
	if c.Env != nil {
		return c.Env(k)
	}
	return os.LookupEnv(k)
}

// BuildProviders makes one provider per backend.
func (c *Catalogue) BuildProviders(client *http.Client) (map[string]providers.Provider, error) {
	out := map[string]providers.Provider{}
	for _, b := range c.Backends {
		base := b.BaseURL
		if b.BaseURLEnv != "" {
			if v, ok := c.lookupEnv(b.BaseURLEnv); ok && v != "" {
				base = v
			}
		}
		key := b.APIKey
		if b.APIKeyEnv != "" {
			if v, ok := c.lookupEnv(b.APIKeyEnv); ok {
				key = v
			}
		}
		if b.APIKeyFile != "" {
			raw, err := os.ReadFile(b.APIKeyFile)
			if err != nil {
				return nil, fmt.Errorf("backend %s: api_key_file: %w", b.Name, err)
			}
			key = strings.TrimSpace(string(raw))
		}
		switch b.Type {
		case BackendBuiltin:
			out[b.Name] = builtin.New(b.Dimensions)
		case BackendOpenAI:
			out[b.Name] = openai.New(openai.Config{Name: b.Name, BaseURL: base, APIKey: key, Headers: b.Headers,
				MaxTokensField: b.MaxTokensField, NoStreamUsage: b.NoStreamUsage, HTTPClient: client})
		case BackendAnthropic:
			out[b.Name] = anthropic.New(anthropic.Config{Name: b.Name, BaseURL: base, APIKey: key, Headers: b.Headers, HTTPClient: client})
		case BackendWorker:
			// Built by the caller, which holds the bus (WorkerBackends).
		}
	}
	return out, nil
}

// WorkerBackends lists the backends served by worker nodes.
func (c *Catalogue) WorkerBackends() []BackendConfig {
	var out []BackendConfig
	for _, b := range c.Backends {
		if b.Type == BackendWorker {
			out = append(out, b)
		}
	}
	return out
}

// backend returns the backend config by name.
func (c *Catalogue) backend(name string) BackendConfig {
	for _, b := range c.Backends {
		if b.Name == name {
			return b
		}
	}
	return BackendConfig{}
}

func (c *Catalogue) breakerConfig() router.BreakerConfig {
	return router.BreakerConfig{FailureThreshold: c.Breaker.FailureThreshold, Cooldown: c.Breaker.Cooldown}
}

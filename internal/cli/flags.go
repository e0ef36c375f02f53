package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/supervisor"
)

// configFlags binds the CONTRACT §1 configuration flags to a command and
// resolves the effective config (flags > env > .agentos.env > defaults).
type configFlags struct {
	fs      *pflag.FlagSet
	envFile string
	values  map[string]*string
	// extra are command-specific setting flags (addString).
	extra []func(*config.Config)
	// lookup reads the environment; nil means os.LookupEnv (tests set it
	// so that the developer's environment cannot leak into them).
	lookup config.Lookup
}

// addString binds one more flag setting a string field with set, at flag
// precedence (e.g. model-policy's --config).
func (cf *configFlags) addString(name, usage string, set func(*config.Config, string)) {
	v := cf.fs.String(name, "", usage)
	cf.extra = append(cf.extra, func(c *config.Config) {
		if *v != "" {
			set(c, *v)
		}
	})
}

// flagEnv maps flag names to the config field they set.
var flagEnv = []struct{ flag, usage string }{
	{"home", "AgentOS home (env AGENTOS_HOME, default ./.agentos)"},
	{"data-dir", "data directory (env AGENTOS_DATA_DIR, default $AGENTOS_HOME/data)"},
	{"mode", "demo, dev or prod (env AGENTOS_MODE, default demo)"},
	{"orchestrator-addr", "orchestrator listen address (env AGENTOS_ORCHESTRATOR_ADDR)"},
	{"model-policy-addr", "model-policy listen address (env AGENTOS_MODEL_POLICY_ADDR)"},
	{"federation-addr", "federation listen address (env AGENTOS_FEDERATION_ADDR)"},
	{"federation-peer-addr", "federation mTLS peer listen address (env AGENTOS_FEDERATION_PEER_ADDR)"},
	{"orchestrator-url", "orchestrator base URL (env AGENTOS_ORCHESTRATOR_URL)"},
	{"model-policy-url", "model-policy base URL (env AGENTOS_MODEL_POLICY_URL)"},
	{"federation-url", "federation base URL (env AGENTOS_FEDERATION_URL)"},
	{"stack-id", "node stack id (env AGENTOS_STACK_ID, default stk_local_node_a)"},
	{"region", "node region (env AGENTOS_REGION, default local)"},
	{"store", "store URL (env AGENTOS_STORE_URL, default sqlite://$AGENTOS_DATA_DIR/agentos.db)"},
}

func bindConfigFlags(cmd *cobra.Command) *configFlags {
	cf := &configFlags{fs: cmd.Flags(), values: map[string]*string{}}
	for _, f := range flagEnv {
		cf.values[f.flag] = cmd.Flags().String(f.flag, "", f.usage)
	}
	cmd.Flags().StringVar(&cf.envFile, "env-file", ".agentos.env", "generated, editable settings file")
	return cf
}

// resolve returns the effective config; mutate (e.g. a service's --addr)
// applies before derived defaults such as URLs are filled.
func (cf *configFlags) resolve(mutate ...func(*config.Config)) (config.Config, error) {
	lookup := cf.lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	c, err := config.Load(lookup, cf.envFile)
	if err != nil {
		return c, err
	}
	set := func(flag string, dst *string) {
		if v := *cf.values[flag]; v != "" {
			*dst = v
		}
	}
	set("home", &c.Home)
	set("data-dir", &c.DataDir)
	set("mode", &c.Mode)
	set("orchestrator-addr", &c.OrchestratorAddr)
	set("model-policy-addr", &c.ModelPolicyAddr)
	set("federation-addr", &c.FederationAddr)
	set("federation-peer-addr", &c.FederationPeerAddr)
	set("orchestrator-url", &c.OrchestratorURL)
	set("model-policy-url", &c.ModelPolicyURL)
	set("federation-url", &c.FederationURL)
	set("stack-id", &c.StackID)
	set("region", &c.Region)
	set("store", &c.StoreURL)
	for _, m := range cf.extra {
		m(&c)
	}
	for _, m := range mutate {
		m(&c)
	}
	return c, c.Finish()
}

// availableServices reports which `agentos serve <name>` subcommands exist in
// this build, so that federation is started only when it has landed.
func availableServices() map[string]bool {
	out := map[string]bool{}
	for _, c := range commands() {
		if c.Name() != "serve" {
			continue
		}
		for _, sc := range c.Commands() {
			out[sc.Name()] = true
		}
	}
	return out
}

// nodeFromFlags resolves the configuration and builds the node.
func nodeFromFlags(cf *configFlags) (*supervisor.Node, error) {
	cfg, err := cf.resolve()
	if err != nil {
		return nil, err
	}
	return supervisor.New(cfg, cf.envFile, availableServices())
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// authFlags are the credential flags of the day-two commands.
type authFlags struct {
	cf     *configFlags
	token  string
	tenant string
}

// bindAuthFlags adds the config flags plus --token and --tenant.
func bindAuthFlags(cmd *cobra.Command) *authFlags {
	a := &authFlags{cf: bindConfigFlags(cmd)}
	cmd.Flags().StringVar(&a.token, "token", "", "API token or JWT (env AGENTOS_TOKEN; default from $AGENTOS_HOME/credentials.json)")
	cmd.Flags().StringVar(&a.tenant, "tenant", "", "tenant to act on (X-Tenant-Id; default the credentials' tenant)")
	return a
}

// Roles a day-two command acts as when it takes its token from credentials.json.
const (
	asPlatformAdmin = "platform_admin"
	asTenantAdmin   = "tenant_admin"
)

// client builds an API client: an explicit --token/AGENTOS_TOKEN wins;
// otherwise the credentials.json token for the role (a platform admin token
// with X-Tenant-Id when --tenant names another tenant); otherwise, in
// demo/dev, header-only auth with X-Tenant-Id.
func (a *authFlags) client(role string) (*apiclient.Client, *supervisor.Node, error) {
	n, err := nodeFromFlags(a.cf)
	if err != nil {
		return nil, nil, err
	}
	c := &apiclient.Client{BaseURL: n.Cfg.OrchestratorURL, PolicyURL: n.Cfg.ModelPolicyURL, HTTP: outbound.ModelClient(outbound.ForModels(n.Cfg))}
	tok := firstNonEmpty(a.token, n.Cfg.Token)
	if tok != "" {
		c.Token, c.TenantID = tok, a.tenant
		return c, n, nil
	}
	creds, err := loadCredentials(n.Cfg.CredentialsFile())
	if err != nil {
		if n.Cfg.DevMode() && role == asTenantAdmin {
			c.TenantID = firstNonEmpty(a.tenant, n.Cfg.DefaultTenant)
			return c, n, nil
		}
		return nil, nil, &ExitError{Code: 2, Err: fmt.Errorf("no credentials: pass --token (or AGENTOS_TOKEN), or run `agentos up` / `agentos bootstrap` to create %s (%v)", n.Cfg.CredentialsFile(), err)}
	}
	switch {
	case role == asTenantAdmin && (a.tenant == "" || a.tenant == creds.TenantID) && creds.TenantAdmin.Token != "":
		c.Token = creds.TenantAdmin.Token
	default:
		c.Token = creds.PlatformAdmin.Token
		c.TenantID = a.tenant
		if c.TenantID == "" && role == asTenantAdmin {
			c.TenantID = creds.TenantID
		}
	}
	return c, n, nil
}

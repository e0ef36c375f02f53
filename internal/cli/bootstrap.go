package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/supervisor"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/config"
)

// Credential is one principal's API token in credentials.json.
type Credential struct {
	PrincipalID string `json:"principal_id"`
	TokenID     string `json:"token_id"`
	Token       string `json:"token"`
}

// Credentials is $AGENTOS_HOME/credentials.json (mode 0600), written by the
// orchestrator's demo/dev seeding or by `agentos bootstrap` in prod.
type Credentials struct {
	TenantID      string     `json:"tenant_id"`
	PlatformAdmin Credential `json:"platform_admin"`
	TenantAdmin   Credential `json:"tenant_admin"`
	CreatedAt     time.Time  `json:"created_at"`
}

// loadCredentials reads credentials.json.
func loadCredentials(path string) (*Credentials, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// saveCredentials writes credentials.json with mode 0600.
func saveCredentials(path string, c *Credentials) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// sampleAgentSpec is the echo agent validate's smoke test runs.
func sampleAgentSpec() map[string]any {
	return map[string]any{
		"name":         "Sample echo agent",
		"description":  "Echoes its input through tool.echo and a tier:fast model call",
		"model_ref":    "tier:fast",
		"instructions": "Call tool.echo with the user's text, then answer with the echoed text.",
		"tools":        []string{"tool.echo"},
		"defaults":     map[string]any{"max_steps": 4, "timeout_ms": 30000},
	}
}

func newBootstrapCmd() *cobra.Command {
	var tenantID, name string
	var sample, restart bool
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create the first platform admin and tenant of a prod node",
		Long: `bootstrap walks an operator through the first minutes of a prod node,
which seeds nothing:
  1. makes a bootstrap admin token (AGENTOS_BOOTSTRAP_ADMIN_TOKEN, or
     $AGENTOS_HOME/secrets/bootstrap-admin.token, 0600) and restarts the
     orchestrator so that it accepts it;
  2. creates the first tenant;
  3. issues a platform admin and a tenant admin API token;
  4. registers the sample echo agent so that 'agentos validate' can run;
  5. writes them to $AGENTOS_HOME/credentials.json (0600).`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cmd.Flags().StringVar(&tenantID, "tenant-id", "", "id of the first tenant (tnt_...); prompted for on a terminal")
	cmd.Flags().StringVar(&name, "name", "", "display name of the first tenant")
	cmd.Flags().BoolVar(&sample, "sample-agent", true, "register agt_sample_echo_v1 in the tenant")
	cmd.Flags().BoolVar(&restart, "restart", true, "restart the orchestrator if it must learn a new bootstrap token")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		n, err := nodeFromFlags(cf)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		in := bufio.NewReader(cmd.InOrStdin())
		interactive := isTerminal(os.Stdin) && isTerminal(os.Stdout)
		if tenantID == "" && interactive {
			tenantID = prompt(out, in, "First tenant id", "tnt_"+strings.ToLower(strings.ReplaceAll(hostnameOr("main"), "-", "_")))
		}
		if tenantID == "" {
			return &ExitError{Code: 2, Err: errors.New("--tenant-id is required (e.g. --tenant-id tnt_acme)")}
		}
		if name == "" {
			name = tenantID
			if interactive {
				name = prompt(out, in, "Tenant display name", tenantID)
			}
		}
		return runBootstrap(cmd.Context(), out, n, tenantID, name, sample, restart)
	}
	return cmd
}

func hostnameOr(def string) string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return def
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		h = h[:i]
	}
	return h
}

func prompt(out io.Writer, in *bufio.Reader, q, def string) string {
	fmt.Fprintf(out, "%s [%s]: ", q, def)
	line, _ := in.ReadString('\n')
	if line = strings.TrimSpace(line); line != "" {
		return line
	}
	return def
}

// bootstrapToken returns the bootstrap admin token: the configured one
// (AGENTOS_BOOTSTRAP_ADMIN_TOKEN or its _FILE), or the one in the secrets
// file, or a new one written there (created=true).
func bootstrapToken(n *supervisor.Node) (tok string, created bool, err error) {
	if n.Cfg.BootstrapAdminToken != "" {
		return n.Cfg.BootstrapAdminToken, false, nil
	}
	p := n.BootstrapTokenFile()
	if b, err := os.ReadFile(p); err == nil {
		return strings.TrimSpace(string(b)), false, nil
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", false, err
	}
	tok = "agb_" + hex.EncodeToString(buf)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", false, err
	}
	return tok, true, os.WriteFile(p, []byte(tok+"\n"), 0o600)
}

func runBootstrap(ctx context.Context, out io.Writer, n *supervisor.Node, tenantID, name string, sample, restart bool) error {
	if n.Cfg.Mode != config.ModeProd {
		fmt.Fprintf(out, "note: mode is %s; demo/dev nodes are already seeded (see %s). Continuing anyway.\n", n.Cfg.Mode, n.Cfg.CredentialsFile())
	}
	step := func(i int, s string) { fmt.Fprintf(out, "[%d/5] %s\n", i, s) }

	step(1, "bootstrap admin token")
	tok, created, err := bootstrapToken(n)
	if err != nil {
		return err
	}
	if len(tok) < 32 {
		return &ExitError{Code: 2, Err: errors.New("the bootstrap admin token must be at least 32 characters")}
	}
	orch, ok := n.Service("orchestrator")
	if !ok {
		return errors.New("this build has no orchestrator")
	}
	st := n.Inspect(ctx, orch)
	switch {
	case created && st.Healthy && restart:
		fmt.Fprintf(out, "    new token in %s; restarting the orchestrator so it accepts it\n", n.BootstrapTokenFile())
		if _, err := n.Stop(orch.Name, 10*time.Second); err != nil {
			return err
		}
		pid, err := n.Start(orch)
		if err != nil {
			return err
		}
		if err := n.WaitHealthy(ctx, orch, pid, 60*time.Second); err != nil {
			return err
		}
	case !st.Healthy:
		return &ExitError{Code: 1, Err: fmt.Errorf("the orchestrator at %s is not running; run `agentos up --mode prod` first", orch.URL)}
	default:
		fmt.Fprintln(out, "    using the existing bootstrap token")
	}
	admin := &apiclient.Client{BaseURL: n.Cfg.OrchestratorURL, PolicyURL: n.Cfg.ModelPolicyURL, Token: tok, HTTP: n.HTTP}
	if _, err := admin.ListTenants(ctx); err != nil {
		return fmt.Errorf("the orchestrator refuses the bootstrap token (%v); next: agentos redeploy --mode prod, then agentos bootstrap again", err)
	}

	step(2, "tenant "+tenantID)
	if _, err := admin.GetTenant(ctx, tenantID); errors.Is(err, errs.ErrNotFound) {
		if _, err := admin.CreateTenant(ctx, map[string]any{"tenant_id": tenantID, "name": name}); err != nil {
			return fmt.Errorf("create tenant: %w", err)
		}
		fmt.Fprintln(out, "    created")
	} else if err != nil {
		return err
	} else {
		fmt.Fprintln(out, "    exists already")
	}

	step(3, "admin tokens")
	creds := &Credentials{TenantID: tenantID, CreatedAt: time.Now().UTC(),
		PlatformAdmin: Credential{PrincipalID: auth.BootstrapPrincipalID, TokenID: "bootstrap", Token: tok}}
	pa, err := admin.IssueToken(ctx, tenantID, apiclient.TokenRequest{PrincipalID: auth.PlatformAdminPrincipalID,
		Roles: []string{"platform_admin"}, Scopes: []string{"admin"}})
	if err == nil {
		creds.PlatformAdmin = Credential{PrincipalID: pa.PrincipalID, TokenID: pa.TokenID, Token: pa.Secret}
		fmt.Fprintf(out, "    platform admin token %s\n", pa.TokenID)
	} else {
		fmt.Fprintf(out, "    platform admin: keeping the bootstrap token (issuing a platform_admin token was refused: %v)\n", err)
	}
	// Like the demo/dev seed: the tenant admin holds every scope; its role
	// keeps it to its own tenant.
	ta, err := admin.IssueToken(ctx, tenantID, apiclient.TokenRequest{PrincipalID: "usr_" + tenantID + "_admin",
		Roles: []string{"tenant_admin"}, Scopes: auth.AllScopes})
	if err != nil {
		return fmt.Errorf("issue tenant admin token: %w", err)
	}
	creds.TenantAdmin = Credential{PrincipalID: ta.PrincipalID, TokenID: ta.TokenID, Token: ta.Secret}
	fmt.Fprintf(out, "    tenant admin token %s for %s\n", ta.TokenID, ta.PrincipalID)

	step(4, "sample agent")
	if sample {
		tc := *admin
		tc.TenantID = tenantID
		if _, err := tc.PutAgent(ctx, "agt_sample_echo_v1", sampleAgentSpec()); err != nil {
			return fmt.Errorf("register sample agent: %w", err)
		}
		fmt.Fprintln(out, "    agt_sample_echo_v1 registered")
	} else {
		fmt.Fprintln(out, "    skipped (--sample-agent=false)")
	}

	step(5, "credentials")
	if err := saveCredentials(n.Cfg.CredentialsFile(), creds); err != nil {
		return err
	}
	fmt.Fprintf(out, "    written to %s (0600)\n\nNext: agentos validate --mode prod\n", n.Cfg.CredentialsFile())
	return nil
}

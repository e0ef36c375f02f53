package tenancy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// Seeded identities and agents (CONTRACT §7).
const (
	PlatformAdminPrincipal = auth.PlatformAdminPrincipalID
	DemoTenantName         = "Demo tenant"
	EchoToolID             = "tool.echo"
	EchoInstructions       = "You are a helpful echo agent: call tool.echo with the user's text, then answer with what it returned."
)

// SeededAgentIDs are the echo agents seeded in demo/dev: the sample agent
// and the ids the original README and older clients use.
var SeededAgentIDs = []string{"agt_sample_echo_v1", "my-agent", "agt_demo"}

// TenantAdminPrincipal returns the seeded tenant admin of tenantID,
// e.g. usr_tnt_demo_admin.
func TenantAdminPrincipal(tenantID string) string { return "usr_" + tenantID + "_admin" }

// CredentialEntry is one seeded principal's API token.
type CredentialEntry struct {
	PrincipalID string `json:"principal_id"`
	TokenID     string `json:"token_id"`
	Token       string `json:"token"`
}

// Credentials is the content of the demo/dev credentials file.
type Credentials struct {
	TenantID      string          `json:"tenant_id"`
	PlatformAdmin CredentialEntry `json:"platform_admin"`
	TenantAdmin   CredentialEntry `json:"tenant_admin"`
	CreatedAt     time.Time       `json:"created_at"`
}

// ReadCredentials reads a credentials file written by Seed.
func ReadCredentials(path string) (Credentials, error) {
	var c Credentials
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// SeedResult says what Seed created and what it found already there. Items
// are "tenant/<id>", "token/<principal>", "agent/<id>", "credentials/<path>".
type SeedResult struct {
	TenantID        string
	Created         []string
	Kept            []string
	AgentIDs        []string
	CredentialsFile string
	Credentials     Credentials
	// Skipped is set (with the reason) when nothing was seeded (prod mode).
	Skipped string
}

// Seed prepares a demo/dev node, idempotently: the default tenant, API
// tokens for usr_platform_admin (platform_admin) and usr_<tenant>_admin
// (tenant_admin), both with every scope, written with their secrets to
// cfg.CredentialsFile() (0600, directory 0700), and the echo agents. Tokens
// already in the credentials file and still valid in the store are kept;
// existing tenants and agents are never modified. In prod nothing is seeded.
func Seed(ctx context.Context, st store.Store, cfg config.Config) (SeedResult, error) {
	res := SeedResult{TenantID: cfg.DefaultTenant}
	if !cfg.DevMode() {
		res.Skipped = "prod mode: nothing is seeded"
		return res, nil
	}
	tid := cfg.DefaultTenant
	if !TenantIDPattern.MatchString(tid) {
		return res, fmt.Errorf("seed: AGENTOS_DEFAULT_TENANT %q must match %s", tid, TenantIDPattern)
	}

	// Tenant.
	switch _, err := st.GetTenant(ctx, tid); {
	case err == nil:
		res.Kept = append(res.Kept, "tenant/"+tid)
	case errors.Is(err, errs.ErrNotFound):
		t := NewTenant(tid, DemoTenantName, cfg)
		t.Metadata.Tags = []string{"seeded"}
		if err := st.CreateTenant(ctx, t); err != nil && !errors.Is(err, errs.ErrConflict) {
			return res, fmt.Errorf("seed tenant %s: %w", tid, err)
		} else if err == nil {
			res.Created = append(res.Created, "tenant/"+tid)
		} else {
			res.Kept = append(res.Kept, "tenant/"+tid)
		}
	default:
		return res, fmt.Errorf("seed: get tenant %s: %w", tid, err)
	}

	// Tokens.
	path := cfg.CredentialsFile()
	res.CredentialsFile = path
	old, err := ReadCredentials(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// A corrupt file is replaced, not fatal.
		old = Credentials{}
	}
	creds := Credentials{TenantID: tid, CreatedAt: old.CreatedAt}
	changed := old.TenantID != tid
	wants := []struct {
		dst       *CredentialEntry
		prev      CredentialEntry
		principal string
		role      string
	}{
		{&creds.PlatformAdmin, old.PlatformAdmin, PlatformAdminPrincipal, auth.RolePlatformAdmin},
		{&creds.TenantAdmin, old.TenantAdmin, TenantAdminPrincipal(tid), auth.RoleTenantAdmin},
	}
	for _, w := range wants {
		if stillValid(ctx, st, w.prev, tid, w.principal, w.role) {
			*w.dst = w.prev
			res.Kept = append(res.Kept, "token/"+w.principal)
			continue
		}
		tok, secret, err := auth.IssueToken(ctx, st, auth.IssueParams{
			TenantID: tid, PrincipalID: w.principal,
			Scopes: append([]string(nil), auth.AllScopes...), Roles: []string{w.role},
		})
		if err != nil {
			return res, fmt.Errorf("seed token for %s: %w", w.principal, err)
		}
		*w.dst = CredentialEntry{PrincipalID: w.principal, TokenID: tok.TokenID, Token: secret}
		res.Created = append(res.Created, "token/"+w.principal)
		changed = true
	}
	if changed {
		if creds.CreatedAt.IsZero() || old.TenantID != tid {
			creds.CreatedAt = time.Now().UTC().Truncate(time.Second)
		}
		if err := writeCredentials(path, creds); err != nil {
			return res, err
		}
		res.Created = append(res.Created, "credentials/"+path)
	} else {
		res.Kept = append(res.Kept, "credentials/"+path)
	}
	res.Credentials = creds

	// Agents.
	for _, id := range SeededAgentIDs {
		res.AgentIDs = append(res.AgentIDs, id)
		_, err := st.GetAgent(ctx, tid, id)
		if err == nil {
			res.Kept = append(res.Kept, "agent/"+id)
			continue
		}
		if !errors.Is(err, errs.ErrNotFound) {
			return res, fmt.Errorf("seed: get agent %s: %w", id, err)
		}
		if err := st.PutAgent(ctx, EchoAgent(tid, id)); err != nil {
			return res, fmt.Errorf("seed agent %s: %w", id, err)
		}
		res.Created = append(res.Created, "agent/"+id)
	}
	return res, nil
}

// EchoAgent returns the seeded echo agent definition.
func EchoAgent(tenantID, agentID string) store.Agent {
	now := time.Now().UTC().Truncate(time.Microsecond)
	name := "Sample echo agent"
	if agentID != "agt_sample_echo_v1" {
		name = "Echo agent (" + agentID + ")"
	}
	return store.Agent{
		AgentID:      agentID,
		TenantID:     tenantID,
		Name:         name,
		Description:  "Echoes the user's text through tool.echo; seeded for demos and smoke tests.",
		Version:      1,
		Status:       store.AgentActive,
		ModelRef:     "tier:" + TierFast,
		Instructions: EchoInstructions,
		Tools:        []string{EchoToolID},
		Defaults:     store.AgentDefaults{MaxSteps: 8, TimeoutMs: 60000},
		CreatedAt:    now,
		UpdatedAt:    now,
	}
}

// stillValid reports whether a credentials-file entry still authenticates
// as the expected principal, tenant and role.
func stillValid(ctx context.Context, st store.TokenStore, e CredentialEntry, tid, principal, role string) bool {
	if e.Token == "" || e.PrincipalID != principal {
		return false
	}
	tok, err := st.TokenBySecretHash(ctx, auth.HashSecret(e.Token))
	if err != nil {
		return false
	}
	if tok.TokenID != e.TokenID || tok.TenantID != tid || tok.PrincipalID != principal || tok.RevokedAt != nil {
		return false
	}
	if tok.ExpiresAt != nil && !time.Now().Before(*tok.ExpiresAt) {
		return false
	}
	for _, r := range tok.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// writeCredentials writes c to path atomically with mode 0600.
func writeCredentials(path string, c Credentials) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("credentials dir: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".credentials-*")
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	return nil
}

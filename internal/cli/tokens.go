package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/apiclient"
)

func newTokensCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "Issue and revoke tenant API tokens over the admin API"}

	issue := &cobra.Command{Use: "issue --tenant <tenant_id> --principal <principal_id>", Short: "Issue an API token (the secret is shown once)", Args: cobra.NoArgs}
	ia := bindAuthFlags(issue)
	var principal string
	var scopes, roles []string
	var expiresIn time.Duration
	var jsonOut bool
	issue.Flags().StringVar(&principal, "principal", "", "principal the token acts as (usr_... or svc_...)")
	issue.Flags().StringSliceVar(&scopes, "scopes", nil, "scopes (default: the roles' default scopes, see docs/operations.md; tenant_user: runs, agents:read, tools, memory, models, policy:check, events:read)")
	issue.Flags().StringSliceVar(&roles, "roles", []string{"tenant_user"}, "roles: tenant_admin, tenant_user, tenant_service")
	issue.Flags().DurationVar(&expiresIn, "expires-in", 0, "lifetime, e.g. 720h (default: no expiry)")
	issue.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	issue.RunE = func(cmd *cobra.Command, _ []string) error {
		if ia.tenant == "" || principal == "" {
			return &ExitError{Code: 2, Err: errors.New("--tenant and --principal are required")}
		}
		c, _, err := ia.client(asPlatformAdmin)
		if err != nil {
			return err
		}
		c.TenantID = "" // the tenant is in the path
		req := apiclient.TokenRequest{PrincipalID: principal, Scopes: scopes, Roles: roles}
		if expiresIn > 0 {
			t := time.Now().Add(expiresIn).UTC()
			req.ExpiresAt = &t
		}
		tok, err := c.IssueToken(cmd.Context(), ia.tenant, req)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if jsonOut {
			return json.NewEncoder(out).Encode(map[string]any{"token": tok})
		}
		fmt.Fprintf(out, "token_id:  %s\nprincipal: %s\nroles:     %v\nscopes:    %v\nsecret:    %s\n\nThe secret is shown only now. Use it as: Authorization: Bearer <secret>\n",
			tok.TokenID, tok.PrincipalID, tok.Roles, tok.Scopes, tok.Secret)
		return nil
	}

	revoke := &cobra.Command{Use: "revoke --tenant <tenant_id> <token_id>", Short: "Revoke an API token", Args: cobra.ExactArgs(1)}
	ra := bindAuthFlags(revoke)
	revoke.RunE = func(cmd *cobra.Command, args []string) error {
		if ra.tenant == "" {
			return &ExitError{Code: 2, Err: errors.New("--tenant is required")}
		}
		c, _, err := ra.client(asPlatformAdmin)
		if err != nil {
			return err
		}
		c.TenantID = ""
		if err := c.RevokeToken(cmd.Context(), ra.tenant, args[0]); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
		return nil
	}
	cmd.AddCommand(issue, revoke)
	return cmd
}

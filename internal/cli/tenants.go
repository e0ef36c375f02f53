package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/store"
)

// tenantFlags are the settable fields of tenants create/update.
type tenantFlags struct {
	name, planTier, policy, status           string
	modelTiers, backends, toolIDs            []string
	maxConcurrent, burst, toolCallsPerMinute int
	maxStreams                               int
	runQPS                                   float64
	maxTokensPerRequest, maxRequestsPerMin   int
	budgetWindow                             string
	budgetTokens                             int64
	budgetCost                               float64
	maxMemoryBytes                           int64
	maxArtifactBytes                         int64
}

func bindTenantFlags(cmd *cobra.Command, t *tenantFlags, update bool) {
	f := cmd.Flags()
	f.StringVar(&t.name, "name", "", "display name")
	f.StringVar(&t.planTier, "plan-tier", "", "plan tier (free, pro, enterprise...)")
	if !update {
		f.StringVar(&t.policy, "default-policy", "", "default policy id (pol_...)")
	} else {
		f.StringVar(&t.status, "status", "", "active or disabled")
	}
	f.StringSliceVar(&t.modelTiers, "model-tiers", nil, "entitled model tiers (fast,balanced,premium or *)")
	f.StringSliceVar(&t.backends, "model-backends", nil, "entitled model backends (builtin,... or *)")
	f.StringSliceVar(&t.toolIDs, "tool-ids", nil, "entitled tool ids (tool.echo,... or *)")
	f.IntVar(&t.maxConcurrent, "max-concurrent-runs", 0, "quota: concurrent runs")
	f.IntVar(&t.maxStreams, "max-concurrent-streams", 0, "quota: concurrent run event streams (SSE) per service; 0 = the node default AGENTOS_QUOTA_MAX_STREAMS")
	f.Float64Var(&t.runQPS, "run-create-qps", 0, "quota: run creations per second")
	f.IntVar(&t.burst, "run-create-burst", 0, "quota: run creation burst")
	f.IntVar(&t.toolCallsPerMinute, "tool-calls-per-minute", 0, "quota: tool calls per minute")
	f.IntVar(&t.maxTokensPerRequest, "max-tokens-per-request", 0, "quota: model tokens per request")
	f.IntVar(&t.maxRequestsPerMin, "max-model-requests-per-minute", 0, "quota: model requests per minute")
	f.StringVar(&t.budgetWindow, "token-budget-window", "", "quota: token budget window (minute, hour, day)")
	f.Int64Var(&t.budgetTokens, "token-budget-max-tokens", 0, "quota: tokens per budget window")
	f.Float64Var(&t.budgetCost, "token-budget-max-cost-usd", 0, "quota: cost per budget window (USD)")
	f.Int64Var(&t.maxMemoryBytes, "max-memory-bytes", 0, "quota: memory/kv bytes")
	f.Int64Var(&t.maxArtifactBytes, "max-artifact-bytes", 0, "quota: total bytes of the tenant's run artifacts (0 unlimited)")
}

// body builds the create/patch object from the flags that were set.
func (t *tenantFlags) body(cmd *cobra.Command) map[string]any {
	ch := cmd.Flags().Changed
	b := map[string]any{}
	setS := func(flag, key, v string) {
		if ch(flag) {
			b[key] = v
		}
	}
	setS("name", "name", t.name)
	setS("plan-tier", "plan_tier", t.planTier)
	setS("default-policy", "default_policy_id", t.policy)
	setS("status", "status", t.status)
	ent := map[string]any{}
	if ch("model-tiers") {
		ent["model_tiers_allowed"] = t.modelTiers
	}
	if ch("model-backends") {
		ent["model_backends_allowed"] = t.backends
	}
	if ch("tool-ids") {
		ent["tool_ids_allowed"] = t.toolIDs
	}
	if len(ent) > 0 {
		b["entitlements"] = ent
	}
	q := map[string]map[string]any{}
	put := func(flag, group, key string, v any) {
		if ch(flag) {
			if q[group] == nil {
				q[group] = map[string]any{}
			}
			q[group][key] = v
		}
	}
	put("max-concurrent-runs", "runs", "max_concurrent_runs", t.maxConcurrent)
	put("max-concurrent-streams", "runs", "max_concurrent_streams", t.maxStreams)
	put("run-create-qps", "runs", "run_create_qps", t.runQPS)
	put("run-create-burst", "runs", "run_create_burst", t.burst)
	put("tool-calls-per-minute", "tools", "tool_calls_per_minute", t.toolCallsPerMinute)
	put("max-tokens-per-request", "models", "max_tokens_per_request", t.maxTokensPerRequest)
	put("max-model-requests-per-minute", "models", "max_requests_per_minute", t.maxRequestsPerMin)
	put("max-memory-bytes", "storage", "max_memory_bytes", t.maxMemoryBytes)
	put("max-artifact-bytes", "storage", "max_artifact_bytes", t.maxArtifactBytes)
	budget := map[string]any{}
	if ch("token-budget-window") {
		budget["window"] = t.budgetWindow
	}
	if ch("token-budget-max-tokens") {
		budget["max_tokens"] = t.budgetTokens
	}
	if ch("token-budget-max-cost-usd") {
		budget["max_cost_usd"] = t.budgetCost
	}
	if len(budget) > 0 {
		if q["models"] == nil {
			q["models"] = map[string]any{}
		}
		q["models"]["token_budget"] = budget
	}
	if len(q) > 0 {
		b["quotas"] = q
	}
	return b
}

func newTenantsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenants", Short: "Manage tenants over the admin API (platform admin)"}
	var jsonOut bool
	cmd.PersistentFlags().BoolVar(&jsonOut, "json", false, "print JSON")

	create := &cobra.Command{Use: "create <tenant_id>", Short: "Create a tenant", Args: cobra.ExactArgs(1)}
	ca := bindAuthFlags(create)
	var ct tenantFlags
	bindTenantFlags(create, &ct, false)
	create.RunE = func(cmd *cobra.Command, args []string) error {
		c, _, err := ca.client(asPlatformAdmin)
		if err != nil {
			return err
		}
		body := ct.body(cmd)
		body["tenant_id"] = args[0]
		if _, ok := body["name"]; !ok {
			body["name"] = args[0]
		}
		t, err := c.CreateTenant(cmd.Context(), body)
		if err != nil {
			return err
		}
		return printTenants(cmd.OutOrStdout(), jsonOut, true, t)
	}

	list := &cobra.Command{Use: "list", Short: "List tenants", Args: cobra.NoArgs}
	la := bindAuthFlags(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		c, _, err := la.client(asPlatformAdmin)
		if err != nil {
			return err
		}
		ts, err := c.ListTenants(cmd.Context())
		if err != nil {
			return err
		}
		return printTenants(cmd.OutOrStdout(), jsonOut, false, ts...)
	}

	get := &cobra.Command{Use: "get <tenant_id>", Short: "Show a tenant with its quotas and entitlements", Args: cobra.ExactArgs(1)}
	ga := bindAuthFlags(get)
	get.RunE = func(cmd *cobra.Command, args []string) error {
		c, _, err := ga.client(asPlatformAdmin)
		if err != nil {
			return err
		}
		t, err := c.GetTenant(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		return printTenants(cmd.OutOrStdout(), jsonOut, true, t)
	}

	update := &cobra.Command{Use: "update <tenant_id>", Short: "Change a tenant's name, status, plan, entitlements or quotas (quotas merge)", Args: cobra.ExactArgs(1)}
	ua := bindAuthFlags(update)
	var ut tenantFlags
	bindTenantFlags(update, &ut, true)
	update.RunE = func(cmd *cobra.Command, args []string) error {
		body := ut.body(cmd)
		if len(body) == 0 {
			return &ExitError{Code: 2, Err: fmt.Errorf("nothing to update: pass at least one flag (see agentos tenants update --help)")}
		}
		c, _, err := ua.client(asPlatformAdmin)
		if err != nil {
			return err
		}
		t, err := c.PatchTenant(cmd.Context(), args[0], body)
		if err != nil {
			return err
		}
		return printTenants(cmd.OutOrStdout(), jsonOut, true, t)
	}

	disable := &cobra.Command{Use: "disable <tenant_id>", Short: "Disable a tenant (it gets forbidden everywhere)", Args: cobra.ExactArgs(1)}
	da := bindAuthFlags(disable)
	disable.RunE = func(cmd *cobra.Command, args []string) error {
		c, _, err := da.client(asPlatformAdmin)
		if err != nil {
			return err
		}
		t, err := c.PatchTenant(cmd.Context(), args[0], map[string]any{"status": store.TenantDisabled})
		if err != nil {
			return err
		}
		return printTenants(cmd.OutOrStdout(), jsonOut, true, t)
	}
	cmd.AddCommand(create, list, get, update, disable)
	return cmd
}

func printTenants(w io.Writer, asJSON, detail bool, ts ...store.Tenant) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if detail && len(ts) == 1 {
			return enc.Encode(map[string]any{"tenant": ts[0]})
		}
		if ts == nil {
			ts = []store.Tenant{}
		}
		return enc.Encode(map[string]any{"tenants": ts})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tNAME\tSTATUS\tPLAN\tCONCURRENT\tRUN QPS\tCREATED")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%g\t%s\n", t.TenantID, t.Name, t.Status, firstNonEmpty(t.PlanTier, "-"),
			t.Quotas.Runs.MaxConcurrentRuns, t.Quotas.Runs.RunCreateQPS, t.CreatedAt.Format("2006-01-02 15:04"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if detail && len(ts) == 1 {
		t := ts[0]
		fmt.Fprintf(w, "\nentitlements: model tiers %s; backends %s; tools %s\n",
			strings.Join(t.Entitlements.ModelTiersAllowed, ","), strings.Join(t.Entitlements.ModelBackendsAllowed, ","),
			strings.Join(t.Entitlements.ToolIDsAllowed, ","))
		q := t.Quotas
		fmt.Fprintf(w, "quotas: runs %d concurrent, %g/s (burst %d); tools %d/min; models %d tokens/request, %d requests/min, budget %d tokens / $%g per %s; memory %d bytes\n",
			q.Runs.MaxConcurrentRuns, q.Runs.RunCreateQPS, q.Runs.RunCreateBurst, q.Tools.ToolCallsPerMinute,
			q.Models.MaxTokensPerRequest, q.Models.MaxRequestsPerMinute, q.Models.TokenBudget.MaxTokens,
			q.Models.TokenBudget.MaxCostUSD, firstNonEmpty(q.Models.TokenBudget.Window, "-"), q.Storage.MaxMemoryBytes)
	}
	return nil
}

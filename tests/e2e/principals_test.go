package e2e

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// TestTokenPrincipals, against a real node: a tenant admin of another
// tenant than the platform admin's cannot issue a token under any of the
// platform's principal names (400 naming principal_id); tokens issued
// without scopes get their roles' defaults; in model-policy bodies a
// tenant_user cannot name another principal (403) while a tenant_service
// can, for a principal of its tenant but not a platform one, and the
// audit log names both the actor and on_behalf_of.
func TestTokenPrincipals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	node := testnode.Start(t, testnode.Options{})
	orch, mp := node.URL("orchestrator"), node.URL("model-policy")
	platform := map[string]string{"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token}
	bearer := func(secret string) map[string]string { return map[string]string{"Authorization": "Bearer " + secret} }
	field := func(out map[string]any) any {
		e, _ := out["error"].(map[string]any)
		d, _ := e["details"].(map[string]any)
		return d["field"]
	}

	code, out := runsJSON(t, "POST", orch+"/v1/admin/tenants", platform, map[string]any{"tenant_id": "tnt_p", "name": "P"})
	require.Equal(t, 201, code, out)
	issue := func(hdr map[string]string, tenant string, body map[string]any) (int, map[string]any) {
		return runsJSON(t, "POST", orch+"/v1/admin/tenants/"+tenant+"/tokens", hdr, body)
	}
	secretOf := func(out map[string]any) string { return out["token"].(map[string]any)["secret"].(string) }

	// A tenant_admin token issued without scopes gets user scopes + admin.
	code, out = issue(platform, "tnt_p", map[string]any{"principal_id": "usr_p_admin", "roles": []string{"tenant_admin"}})
	require.Equal(t, 201, code, out)
	require.Contains(t, out["token"].(map[string]any)["scopes"], "admin")
	require.Contains(t, out["token"].(map[string]any)["scopes"], "models:invoke")
	tadmin := bearer(secretOf(out))

	for _, p := range []string{"usr_platform_admin", "usr_bootstrap_admin", "usr_agentos_probe", "USR_PLATFORM_ADMIN",
		"svc_agentos_orchestrator", "usr_platform_ops", "sys_scheduler"} {
		code, out = issue(tadmin, "tnt_p", map[string]any{"principal_id": p})
		require.Equal(t, 400, code, "%s: %v", p, out)
		require.Equal(t, "invalid_request", out["error"].(map[string]any)["code"], p)
		require.Equal(t, "principal_id", field(out), p)
	}
	// Explicit empty scopes: refused, not a token that can do nothing.
	code, out = issue(tadmin, "tnt_p", map[string]any{"principal_id": "usr_carol", "scopes": []string{}})
	require.Equal(t, 400, code, out)
	require.Equal(t, "scopes", field(out))
	// A platform admin may issue a platform principal.
	code, out = issue(platform, "tnt_p", map[string]any{"principal_id": "usr_platform_ops", "roles": []string{"tenant_service"}})
	require.Equal(t, 201, code, out)

	code, out = issue(tadmin, "tnt_p", map[string]any{"principal_id": "usr_alice"})
	require.Equal(t, 201, code, out)
	require.Equal(t, []any{"tenant_user"}, out["token"].(map[string]any)["roles"])
	alice := bearer(secretOf(out))
	code, out = issue(tadmin, "tnt_p", map[string]any{"principal_id": "svc_backend", "roles": []string{"tenant_service"}})
	require.Equal(t, 201, code, out)
	require.Contains(t, out["token"].(map[string]any)["scopes"], "models:invoke")
	backend := bearer(secretOf(out))

	invoke := func(hdr map[string]string, principal string) (int, map[string]any) {
		return runsJSON(t, "POST", mp+"/v1/models:invoke", hdr, map[string]any{
			"auth": map[string]any{"tenant_id": "tnt_p", "principal_id": principal},
			"request": map[string]any{"request_id": "req_" + principal, "operation": "chat", "model_ref": "tier:fast",
				"input": map[string]any{"messages": []map[string]any{{"role": "user", "content": "hello"}}}}})
	}
	code, out = invoke(alice, "usr_alice")
	require.Equal(t, 200, code, out)
	code, out = invoke(alice, "usr_bob")
	require.Equal(t, 403, code, out)
	require.Equal(t, "auth.principal_id", field(out))
	code, out = invoke(backend, "usr_platform_admin")
	require.Equal(t, 400, code, out)
	require.Equal(t, "auth.principal_id", field(out))
	code, out = invoke(backend, "usr_bob")
	require.Equal(t, 200, code, out)
	code, out = runsJSON(t, "POST", mp+"/v1/policy:check", backend, map[string]any{
		"auth":         map[string]any{"principal_id": "usr_bob"},
		"policy_check": map[string]any{"request_id": "req_pc", "content": map[string]any{"type": "text", "text": "hi"}}})
	require.Equal(t, 200, code, out)

	// model-policy writes its audit records in batches: wait for them.
	want := map[string]string{"usr_alice/": "model.invoke", "svc_backend/usr_bob": "model.invoke|policy.check"}
	var got map[string]string
	require.Eventually(t, func() bool {
		got = auditActors(t, orch, platform, "tnt_p", "model.invoke", "policy.check")
		return len(got) == len(want) && got["svc_backend/usr_bob"] == want["svc_backend/usr_bob"]
	}, time.Minute, 100*time.Millisecond, "audit records of tnt_p")
	require.Equal(t, want, got, "refused calls leave no model record; delegated ones name actor and on_behalf_of")
}

// auditActors lists a tenant's audit records of the given actions as
// "principal_id/on_behalf_of" → actions joined by "|", in order.
func auditActors(t *testing.T, orch string, hdr map[string]string, tenant string, actions ...string) map[string]string {
	code, out := runsJSON(t, "GET", orch+"/v1/admin/audit?limit=1000&tenant_id="+tenant, hdr, nil)
	require.Equal(t, 200, code, out)
	got := map[string]string{}
	for _, r := range out["records"].([]any) {
		rec := r.(map[string]any)
		act, _ := rec["action"].(string)
		match := false
		for _, a := range actions {
			match = match || a == act
		}
		if !match {
			continue
		}
		obo, _ := rec["on_behalf_of"].(string)
		k := fmt.Sprintf("%s/%s", rec["principal_id"], obo)
		if got[k] == "" {
			got[k] = act
		} else if !regexp.MustCompile(`(^|\|)` + regexp.QuoteMeta(act) + `($|\|)`).MatchString(got[k]) {
			got[k] += "|" + act
		}
	}
	return got
}

// TestTokenIssuedWithoutScopesWorks: `agentos tokens issue` without
// --scopes issues a tenant_user token with the role's default scopes, which
// can create a run (whose model calls are audited as the orchestrator on
// behalf of the token's principal) and call a model through the
// OpenAI-compatible API.
func TestTokenIssuedWithoutScopesWorks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	node := testnode.Start(t, testnode.Options{})
	orch, mp := node.URL("orchestrator"), node.URL("model-policy")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := node.Run(ctx, "tokens", "issue", "--tenant", "tnt_demo", "--principal", "usr_cli")
	require.NoError(t, err, out)
	m := regexp.MustCompile(`secret:\s+(agt_sk_\S+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	require.Contains(t, out, "models:invoke")
	user := map[string]string{"Authorization": "Bearer " + m[1]}

	code, run := runsJSON(t, "POST", orch+"/v1/agents/agt_sample_echo_v1/runs", user, map[string]any{"input": "echo hi"})
	require.Equal(t, 201, code, run)
	runID := run["run"].(map[string]any)["run_id"].(string)
	evs := runsStream(t, orch, runID)
	require.NotEmpty(t, evs)
	code, run = runsJSON(t, "GET", orch+"/v1/runs/"+runID, user, nil)
	require.Equal(t, 200, code, run)
	require.Equal(t, "completed", run["run"].(map[string]any)["status"], run)

	code, chat := runsJSON(t, "POST", mp+"/v1/chat/completions", user, map[string]any{
		"model": "tier:fast", "messages": []map[string]any{{"role": "user", "content": "hello"}}})
	require.Equal(t, 200, code, chat)

	platform := map[string]string{"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token}
	require.Eventually(t, func() bool {
		got := auditActors(t, orch, platform, "tnt_demo", "model.invoke", "model.chat_completions")
		_, viaRun := got["svc_agentos_orchestrator/usr_cli"]
		_, direct := got["usr_cli/"]
		return viaRun && direct
	}, time.Minute, 100*time.Millisecond, "the run's model calls are audited as the orchestrator on behalf of usr_cli, the direct call as usr_cli")

	// The user's own usage includes its run's calls, made by the orchestrator.
	require.Eventually(t, func() bool {
		code, u := runsJSON(t, "GET", mp+"/v1/usage", user, nil)
		require.Equal(t, 200, code, u)
		viaRun, direct := false, false
		for _, r := range u["usage"].(map[string]any)["records"].([]any) {
			rec := r.(map[string]any)
			require.Equal(t, "usr_cli", rec["principal_id"])
			viaRun = viaRun || (rec["actor_id"] == "svc_agentos_orchestrator" && rec["run_id"] == runID)
			direct = direct || rec["actor_id"] == nil
		}
		return viaRun && direct
	}, time.Minute, 100*time.Millisecond, "usage of usr_cli: the run's calls with actor_id, the direct one without")
}

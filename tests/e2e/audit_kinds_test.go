package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// auditKinds lists every audit record the node writes (grep: s.audit(,
// Audit.Record(, AuditRecord{ in agentorchestrator, modelpolicy and
// federation), with the traffic below that writes it. Those marked
// optional depend on timing and are not required to appear.
var auditKinds = []struct {
	node, action string
	optional     bool
	tenant       string // only records of this tenant ("" any)
}{
	{"a", "model.chat_completions", false, "tnt_aud_deny"},   // policy denial (entitlements), recorded with its error_code
	{"a", "model.chat_completions", false, "tnt_aud_budget"}, // budget refusal, recorded with its error_code
	{"a", "tenant.create", false, ""},                        // agentorchestrator/admin.go
	{"a", "tenant.update", false, ""},                        // agentorchestrator/admin.go
	{"a", "token.issue", false, ""},                          // agentorchestrator/admin.go
	{"a", "token.revoke", false, ""},                         // agentorchestrator/admin.go
	{"a", "agent.put", false, ""},                            // agentorchestrator/agents.go
	{"a", "tool.put", false, ""},                             // agentorchestrator/tools_admin.go
	{"a", "tool.delete", false, ""},                          // agentorchestrator/tools_admin.go
	{"a", "run.create", false, ""},                           // agentorchestrator/runs.go (with the run, one transaction)
	{"a", "run.cancel", true, ""},                            // agentorchestrator/lifecycle.go (only if the run is still live)
	{"a", "model.invoke", false, ""},                         // modelpolicy/pipeline.go: a run's model call
	{"a", "model.chat_completions", false, ""},               // modelpolicy/openaicompat.go
	{"a", "model.embeddings", false, ""},                     // modelpolicy/openaicompat.go
	{"a", "policy.check", false, ""},                         // modelpolicy/handlers.go
	{"a", "federation.forward", false, ""},                   // federation/forward.go (outbound)
	{"a", "federation.events.proxy", false, ""},
	{"a", "federation.ingest", false, ""},         // federation/ingest.go (client API)
	{"b", "federation.forward.accept", false, ""}, // federation/forward.go (inbound, on the peer)
	{"b", "federation.events.serve", false, ""},   // federation/proxy.go (on the peer)
	{"a", "federation.events.replica", true, ""},  // federation/proxy.go (fallback when the peer is down)
	{"b", "federation.peer.reject", false, ""},    // federation/server.go (refused peer credentials)
}

// TestAuditChainEveryRecordKind: two federated nodes serve every kind of
// traffic that writes an audit record (admin actions, runs with tool and
// model calls, chat completions, embeddings, a policy denial, a budget
// refusal, token issue/revoke, federation forward and ingest); then
// `agentos audit verify` says both chains are intact and their periodic
// signed checkpoints hold; then one byte of one stored record of each
// kind is changed and verify names exactly that record; finally a chain
// rewritten as a whole and a truncated one are caught by the checkpoints
// (the node's file and an exported copy).
func TestAuditChainEveryRecordKind(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	env := func(stack string) []string {
		return []string{"AGENTOS_STACK_ID=" + stack, "AGENTOS_AUDIT_CHECKPOINT_INTERVAL=1s"}
	}
	a := &fedNode{Node: testnode.Start(t, testnode.Options{Env: env("stk_local_node_a")}), stackID: "stk_local_node_a"}
	b := &fedNode{Node: testnode.Start(t, testnode.Options{Env: env("stk_local_node_b")}), stackID: "stk_local_node_b"}
	fedCLI(t, a, "certs", "init")
	fedCLI(t, a, "certs", "issue")
	fedCLI(t, a, "certs", "issue", "--stack-id", b.stackID, "--out", filepath.Join(b.Home, "federation"))
	fedCLI(t, a, "peers", "add", b.stackID, "--url", b.fedPeerURL(), "--peer-region", "local",
		"--public-key-file", filepath.Join(b.Home, "federation", "signing.pub"))
	fedCLI(t, b, "peers", "add", a.stackID, "--url", a.fedPeerURL(), "--peer-region", "local",
		"--public-key-file", filepath.Join(a.Home, "federation", "signing.pub"))
	a.StartService("federation")
	b.StartService("federation")

	orch, mp, fed := a.URL("orchestrator"), a.URL("model-policy"), a.URL("federation")
	admin := map[string]string{"Authorization": "Bearer " + a.Credentials().PlatformAdmin.Token}
	as := func(tenant string) map[string]string {
		return map[string]string{"X-Tenant-Id": tenant, "X-Principal-Id": "usr_e2e"}
	}
	do := func(method, url string, hdr map[string]string, body any, want int) []byte {
		t.Helper()
		code, _, out := fedDo(t, nil, method, url, hdr, body)
		require.Equal(t, want, code, "%s %s: %s", method, url, out)
		return out
	}
	tenantAdmin := map[string]string{"Authorization": "Bearer " + a.Credentials().TenantAdmin.Token}
	all := map[string]any{"model_tiers_allowed": []string{"*"}, "model_backends_allowed": []string{"*"}, "tool_ids_allowed": []string{"*"}}

	// Admin actions.
	do("POST", orch+"/v1/admin/tenants", admin, map[string]any{"tenant_create": map[string]any{"tenant_id": "tnt_aud",
		"name": "audit", "plan_tier": "pro", "entitlements": all}}, http.StatusCreated)
	do("PATCH", orch+"/v1/admin/tenants/tnt_aud", admin, map[string]any{"metadata": map[string]any{"billing_account": "acct-1"}}, http.StatusOK)
	var issued struct {
		Token struct {
			TokenID string `json:"token_id"`
		} `json:"token"`
	}
	require.NoError(t, json.Unmarshal(do("POST", orch+"/v1/admin/tenants/tnt_aud/tokens", admin,
		map[string]any{"principal_id": "usr_aud", "roles": []string{"tenant_user"}, "scopes": []string{"runs:read"}}, http.StatusCreated), &issued))
	do("DELETE", orch+"/v1/admin/tenants/tnt_aud/tokens/"+issued.Token.TokenID, admin, nil, http.StatusNoContent)
	agent := map[string]any{"name": "Audit echo", "model_ref": "tier:fast", "instructions": "echo", "tools": []string{"tool.echo"}}
	code, _, out := fedDo(t, nil, "PUT", orch+"/v1/admin/agents/agt_audit", tenantAdmin, agent)
	require.Contains(t, []int{200, 201}, code, string(out))
	tool := map[string]any{"name": "audit_hook", "description": "d", "kind": "webhook", "url": "https://hooks.example.com/x", "secret": "0123456789abcdef0123456789abcdef",
		"input_schema": map[string]any{"type": "object"}}
	code, _, out = fedDo(t, nil, "PUT", orch+"/v1/admin/tools/tool.audit_hook", tenantAdmin, tool)
	require.Contains(t, []int{200, 201}, code, string(out))
	code, _, out = fedDo(t, nil, "DELETE", orch+"/v1/admin/tools/tool.audit_hook", tenantAdmin, nil)
	require.Contains(t, []int{200, 204}, code, string(out))

	// A run with a tool call and model calls, and one canceled.
	runBody := map[string]any{"input": map[string]any{"type": "text", "text": "hello audit"}}
	var run struct {
		Run struct {
			RunID string `json:"run_id"`
		} `json:"run"`
	}
	require.NoError(t, json.Unmarshal(do("POST", orch+"/v1/agents/agt_sample_echo_v1/runs", as("tnt_demo"), runBody, http.StatusCreated), &run))
	require.Eventually(t, func() bool {
		_, _, out := fedDo(t, nil, "GET", orch+"/v1/runs/"+run.Run.RunID, as("tnt_demo"), nil)
		return bytes.Contains(out, []byte(`"status":"completed"`))
	}, time.Minute, 100*time.Millisecond, "run completes")
	require.NoError(t, json.Unmarshal(do("POST", orch+"/v1/agents/agt_sample_echo_v1/runs", as("tnt_demo"), runBody, http.StatusCreated), &run))
	_, _, _ = fedDo(t, nil, "POST", orch+"/v1/runs/"+run.Run.RunID+":cancel", as("tnt_demo"), nil)

	// OpenAI-compatible calls, a policy check, a policy denial (a tier the
	// tenant is not entitled to) and a budget refusal.
	chat := map[string]any{"model": "tier:fast", "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
	do("POST", mp+"/v1/chat/completions", as("tnt_demo"), chat, http.StatusOK)
	do("POST", mp+"/v1/embeddings", as("tnt_demo"), map[string]any{"model": "tier:embed", "input": []string{"a", "b"}}, http.StatusOK)
	do("POST", mp+"/v1/policy:check", as("tnt_demo"), map[string]any{"policy_check": map[string]any{
		"content": map[string]any{"type": "text", "text": "mail a@b.io"}}}, http.StatusOK)
	do("POST", orch+"/v1/admin/tenants", admin, map[string]any{"tenant_create": map[string]any{"tenant_id": "tnt_aud_deny",
		"name": "deny", "plan_tier": "free", "entitlements": map[string]any{"model_tiers_allowed": []string{"embed"}, "model_backends_allowed": []string{"*"}}}}, http.StatusCreated)
	do("POST", mp+"/v1/chat/completions", as("tnt_aud_deny"), chat, http.StatusForbidden)
	do("POST", orch+"/v1/admin/tenants", admin, map[string]any{"tenant_create": map[string]any{"tenant_id": "tnt_aud_budget",
		"name": "budget", "plan_tier": "free", "entitlements": all,
		"quotas": map[string]any{"models": map[string]any{"token_budget": map[string]any{"window": "day", "max_tokens": 1}}}}}, http.StatusCreated)
	code, _, out = fedDo(t, nil, "POST", mp+"/v1/chat/completions", as("tnt_aud_budget"), chat)
	require.Contains(t, []int{402, 429}, code, "budget refusal: %s", out)

	// Federation: a forward from A to B streamed back through A, and an ingest.
	forward := map[string]any{"forward": map[string]any{
		"target_selector": map[string]any{"stack_id": b.stackID, "required_capabilities": []string{"runs.forward", "events_stream"}},
		"auth":            map[string]any{"tenant_id": "tnt_demo"},
		"run_request":     map[string]any{"agent_id": "agt_sample_echo_v1", "input": map[string]any{"type": "text", "text": "hi B"}}}}
	var fwd struct {
		Forwarded struct {
			RemoteEventsURL string `json:"remote_events_url"`
		} `json:"forwarded"`
	}
	require.NoError(t, json.Unmarshal(do("POST", fed+"/v1/federation/runs:forward", as("tnt_demo"), forward, http.StatusCreated), &fwd))
	do("GET", fed+fwd.Forwarded.RemoteEventsURL, as("tnt_demo"), nil, http.StatusOK)
	ev := map[string]any{"event_id": "evt_aud_1", "sequence": 1, "time": time.Now().UTC(), "type": "agentos.run.created",
		"tenant_id": "tnt_demo", "agent_id": "agt_sample_echo_v1", "run_id": "run_aud_1",
		"trace": map[string]any{"traceparent": "", "span_id": ""}, "payload": map[string]any{"status": "queued"}}
	ingestHdr := map[string]string{"Authorization": admin["Authorization"], "X-Tenant-Id": "tnt_demo"}
	do("POST", fed+"/v1/federation/events:ingest", ingestHdr,
		map[string]any{"events": []any{ev}, "ingest": map[string]any{"source_stack_id": "stk_aud_restore"}}, http.StatusOK)

	// A peer request with A's certificate and an identity token B cannot
	// verify: refused and audited on B.
	code, _, out = fedDo(t, fedLoadIdentity(t, a).client(true), "POST", b.fedPeerURL()+"/v1/federation/runs:forward",
		map[string]string{"Authorization": "Bearer not-a-jwt"}, forward)
	require.Equal(t, http.StatusUnauthorized, code, string(out))

	// Stop both nodes (a clean stop signs the final head) and verify.
	for _, n := range []*fedNode{a, b} {
		for _, s := range []string{"federation", "model-policy", "orchestrator"} {
			n.Stop(s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	verify := func(n *fedNode, args ...string) (string, int) {
		out, err := n.Run(ctx, append([]string{"audit", "verify"}, args...)...)
		if ee, ok := err.(*exec.ExitError); ok {
			return out, ee.ExitCode()
		}
		require.NoError(t, err, out)
		return out, 0
	}
	dbs := map[string]*sql.DB{}
	for name, n := range map[string]*fedNode{"a": a, "b": b} {
		out, code := verify(n)
		require.Equal(t, 0, code, "node %s: %s", name, out)
		require.Contains(t, out, "audit chain ok: ")
		require.Contains(t, out, "checkpoints ok: ", "node %s: the periodic writer signed the head", name)
		db, err := sql.Open("sqlite", filepath.Join(n.Home, "data", "agentos.db"))
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		dbs[name] = db
	}
	nodes := map[string]*fedNode{"a": a, "b": b}

	// One byte of one stored record of each kind: verify names that record.
	for _, k := range auditKinds {
		db := dbs[k.node]
		var seq int64
		var id string
		var rec []byte
		err := db.QueryRow(`SELECT seq, audit_id, record FROM audit_log WHERE action = ? AND (? = '' OR tenant_id = ?)
			ORDER BY seq LIMIT 1`, k.action, k.tenant, k.tenant).Scan(&seq, &id, &rec)
		if err == sql.ErrNoRows && k.optional {
			t.Logf("%s: no %s record (optional)", k.node, k.action)
			continue
		}
		require.NoError(t, err, "node %s wrote no %s record (tenant %q)", k.node, k.action, k.tenant)
		if k.tenant != "" {
			require.Contains(t, string(rec), `"error_code":"`, "%s refused for %s", k.action, k.tenant)
		}
		require.NotEmpty(t, rec, "%s is stored canonically", k.action)
		// Flip one byte inside the action's name.
		i := bytes.Index(rec, []byte(`"action":"`+k.action+`"`)) + len(`"action":"`)
		tampered := append([]byte(nil), rec...)
		tampered[i] ^= 0x20
		_, err = db.Exec(`UPDATE audit_log SET record = ? WHERE seq = ?`, tampered, seq)
		require.NoError(t, err)
		out, code := verify(nodes[k.node])
		require.Equal(t, 1, code, "%s: %s", k.action, out)
		require.Contains(t, out, fmt.Sprintf("audit chain broken at seq %d (%s): hash mismatch", seq, id), k.action)
		_, err = db.Exec(`UPDATE audit_log SET record = ? WHERE seq = ?`, rec, seq)
		require.NoError(t, err)
	}
	// A column edited behind the node's back (moving a record to another
	// tenant) is named with the field.
	var seq int64
	var vout string
	require.NoError(t, dbs["a"].QueryRow(`SELECT seq FROM audit_log WHERE action = 'model.chat_completions' LIMIT 1`).Scan(&seq))
	_, err := dbs["a"].Exec(`UPDATE audit_log SET tenant_id = 'tnt_aud' WHERE seq = ?`, seq)
	require.NoError(t, err)
	vout, code = verify(a)
	require.Equal(t, 1, code, vout)
	require.Contains(t, vout, fmt.Sprintf("audit chain broken at seq %d (", seq))
	require.Contains(t, vout, "columns differ from its hashed bytes (field tenant_id)")
	_, err = dbs["a"].Exec(`UPDATE audit_log SET tenant_id = 'tnt_demo' WHERE seq = ?`, seq)
	require.NoError(t, err)
	vout, code = verify(a)
	require.Equal(t, 0, code, vout)

	// Rewritten as a whole (edited and re-hashed to the end): the records
	// verify, the checkpoints do not, nor does the exported copy.
	exported := fedCLI(t, a, "audit", "checkpoint", "--export")
	kept := filepath.Join(t.TempDir(), "checkpoint.json")
	require.NoError(t, os.WriteFile(kept, []byte(exported), 0o600))
	var head struct {
		Seq int64 `json:"seq"`
	}
	require.NoError(t, json.Unmarshal([]byte(exported), &head))
	rewriteChain(t, dbs["a"], seq)
	vout, code = verify(a, "--checkpoint", kept)
	require.Equal(t, 3, code, vout)
	require.Contains(t, vout, "audit chain ok: ")
	require.Contains(t, vout, fmt.Sprintf("audit chain rewritten: record %d has hash", head.Seq))
	require.Contains(t, vout, "checkpoint.json line 1")

	// Truncated tail on B.
	var last int64
	require.NoError(t, dbs["b"].QueryRow(`SELECT max(seq) FROM audit_log`).Scan(&last))
	_, err = dbs["b"].Exec(`DELETE FROM audit_log WHERE seq = ?`, last)
	require.NoError(t, err)
	vout, code = verify(b)
	require.Equal(t, 3, code, vout)
	require.Contains(t, vout, fmt.Sprintf("audit chain truncated: it ends at seq %d, but the checkpoint at seq %d", last-1, last))
}

// rewriteChain edits record from (its outcome) and re-hashes it and every
// later record, as someone with write access to the database could.
func rewriteChain(t *testing.T, db *sql.DB, from int64) {
	t.Helper()
	rows, err := db.Query(`SELECT seq, record, prev_hash, hash FROM audit_log WHERE seq >= ? ORDER BY seq`, from)
	require.NoError(t, err)
	type row struct {
		seq        int64
		rec        []byte
		prev, hash string
	}
	var rs []row
	for rows.Next() {
		var r row
		require.NoError(t, rows.Scan(&r.seq, &r.rec, &r.prev, &r.hash))
		rs = append(rs, r)
	}
	require.NoError(t, rows.Close())
	prev := rs[0].prev
	for i, r := range rs {
		rec, err := store.DecodeCanonical(r.rec)
		require.NoError(t, err)
		if i == 0 {
			rec.Outcome = "forged"
		}
		rec.PrevHash = prev
		b, err := store.CanonicalAudit(rec)
		require.NoError(t, err)
		h := store.HashCanonical(b)
		_, err = db.Exec(`UPDATE audit_log SET outcome = ?, prev_hash = ?, hash = ?, record = ? WHERE seq = ?`, rec.Outcome, prev, h, b, r.seq)
		require.NoError(t, err)
		prev = h
	}
}

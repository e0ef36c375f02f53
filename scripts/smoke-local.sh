#!/usr/bin/env bash
# smoke-local.sh: the README's quick-tour curl checks against a running local
# node (`./agentos up`), with bounded retries and IPv4 forced.
#
#   ORCH=http://127.0.0.1:50081 MP=http://127.0.0.1:50082 ./scripts/smoke-local.sh
#
# Env: AGENTOS_ORCHESTRATOR_URL / AGENTOS_MODEL_POLICY_URL (or ORCH / MP),
# AGENTOS_HOME (for credentials.json, default ./.agentos), TENANT (tnt_demo),
# RETRIES (default 20), DELAY seconds between retries (default 0.5).
set -euo pipefail

ORCH="${ORCH:-${AGENTOS_ORCHESTRATOR_URL:-http://127.0.0.1:50081}}"
MP="${MP:-${AGENTOS_MODEL_POLICY_URL:-http://127.0.0.1:50082}}"
HOME_DIR="${AGENTOS_HOME:-./.agentos}"
TENANT="${TENANT:-tnt_demo}"
RETRIES="${RETRIES:-20}"
DELAY="${DELAY:-0.5}"
CURL=(curl -4 -sS --max-time 10)

pass=0
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { pass=$((pass + 1)); echo "ok   $*"; }

# retry N times: "$@" must succeed and print something; prints it compacted.
retry() {
  local i out
  for ((i = 1; i <= RETRIES; i++)); do
    if out="$("$@" 2>/dev/null)" && [ -n "$out" ]; then
      printf '%s' "$out" | tr -d ' \n'  # compact, so the checks below match any JSON spacing
      return 0
    fi
    sleep "$DELAY"
  done
  return 1
}

# 1. health
for svc in "$ORCH" "$MP"; do
  body="$(retry "${CURL[@]}" -f "$svc/v1/health")" || fail "$svc/v1/health not healthy after $RETRIES tries"
  case "$body" in *'"status":"ok"'*) ok "health $svc" ;; *) fail "health $svc: $body" ;; esac
done

# 2. create a run (header auth, demo/dev mode)
run="$(retry "${CURL[@]}" -f -X POST "$ORCH/v1/agents/my-agent/runs" \
  -H "X-Tenant-Id: $TENANT" -H "Content-Type: application/json" \
  -d '{"input": "hello"}')" || fail "create run on my-agent"
run_id="$(printf '%s' "$run" | sed -n 's/.*"run_id":"\([^"]*\)".*/\1/p')"
[ -n "$run_id" ] || fail "no run_id in: $run"
ok "run created $run_id"

# 3. stream its events to the terminal event
events="$("${CURL[@]}" -N --max-time 60 -H "X-Tenant-Id: $TENANT" "$ORCH/v1/runs/$run_id/events" || true)"
case "$events" in
  *"event: agentos.run.completed"*) ok "events streamed to agentos.run.completed ($(printf '%s\n' "$events" | grep -c '^event:') events)" ;;
  *) fail "run $run_id did not complete; stream was: $(printf '%s' "$events" | tail -5)" ;;
esac
run_get="$(retry "${CURL[@]}" -f -H "X-Tenant-Id: $TENANT" "$ORCH/v1/runs/$run_id")" || fail "GET run"
case "$run_get" in *'"status":"completed"'*) ok "run $run_id completed" ;; *) fail "run status: $run_get" ;; esac

# 4. list models
models="$(retry "${CURL[@]}" -f -H "X-Tenant-Id: $TENANT" "$MP/v1/models")" || fail "list models"
case "$models" in *'"model_id"'*) ok "models listed" ;; *) fail "models: $models" ;; esac

# 5. create a tenant with the platform admin token
creds="$HOME_DIR/credentials.json"
[ -r "$creds" ] || fail "$creds not readable (run ./agentos up first)"
admin_token="$(tr -d '\n ' < "$creds" | sed -n 's/.*"platform_admin":{[^}]*"token":"\([^"]*\)".*/\1/p')"
[ -n "$admin_token" ] || fail "no platform_admin token in $creds"
tid="tnt_smoke_$(date +%s)$$"
created="$(retry "${CURL[@]}" -f -X POST "$ORCH/v1/admin/tenants" \
  -H "Authorization: Bearer $admin_token" -H "Content-Type: application/json" \
  -d "{\"tenant_create\":{\"tenant_id\":\"$tid\",\"name\":\"Smoke test\"}}")" || fail "create tenant $tid"
case "$created" in *"\"tenant_id\":\"$tid\""*) ok "tenant $tid created" ;; *) fail "create tenant: $created" ;; esac

# 6. the new tenant cannot see tnt_demo's run
code="$("${CURL[@]}" -o /dev/null -w '%{http_code}' -H "X-Tenant-Id: $tid" "$ORCH/v1/runs/$run_id" || true)"
[ "$code" = 404 ] || fail "tenant $tid got HTTP $code on $TENANT's run, want 404"
ok "tenant isolation (404)"

echo "smoke-local: $pass checks passed"

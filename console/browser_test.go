package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// chromiumPath is Debian's chromium, which .ci/run installs (pinned).
const chromiumPath = "/usr/bin/chromium"

// axePath is axe-core from tests/interop/console (npm ci in .ci/run).
var axePath = filepath.Join("..", "tests", "interop", "console", "node_modules", "axe-core", "axe.min.js")

// needBrowser skips the test when Chromium or axe-core is missing, unless
// AGENTOS_TEST_CHROMIUM=1 (set by .ci/run after installing both) makes
// them required.
func needBrowser(t *testing.T) (axe string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real processes and a browser")
	}
	required := os.Getenv("AGENTOS_TEST_CHROMIUM") == "1"
	for _, p := range []string{chromiumPath, axePath} {
		if _, err := os.Stat(p); err != nil {
			if required {
				t.Fatalf("%s is missing (AGENTOS_TEST_CHROMIUM=1 makes it required): %v", p, err)
			}
			t.Skipf("%s is missing: apt-get install chromium; (cd tests/interop/console && npm ci)", p)
		}
	}
	b, err := os.ReadFile(axePath)
	require.NoError(t, err)
	return string(b)
}

// screenshotDir is AGENTOS_TEST_CONSOLE_SCREENSHOTS (CI points it at its
// artifacts) or a temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("AGENTOS_TEST_CONSOLE_SCREENSHOTS"); d != "" {
		require.NoError(t, os.MkdirAll(d, 0o755))
		return d
	}
	return t.TempDir()
}

// browser starts a headless Chromium with a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	// The first Run starts the browser; it lives as long as ctx.
	_, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	return ctx
}

// tab opens a new tab (its own sessionStorage) in the browser of parent.
func tab(t *testing.T, parent context.Context) context.Context {
	ctx, cancel := chromedp.NewContext(parent)
	t.Cleanup(cancel)
	// The first Run opens the tab, which lives as long as that Run's
	// context: so not one with run's timeout.
	_, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	return ctx
}

// run runs browser actions with a bound, failing the test on error.
func run(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, steps...))
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, js string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, opts...))
	require.NoError(t, err)
	return v
}

func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	return loc
}

// text returns the text of the first element matching sel, "" if none.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return eval[string](t, ctx, fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel))
}

// eventually polls cond (a browser-side check) until it holds.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: not seen within 60 s; the page says:\n%s", what, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // the whole page, PNG
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// checkA11y runs axe-core on the current page and fails on any serious or
// critical violation.
func checkA11y(t *testing.T, ctx context.Context, axe, page string) {
	t.Helper()
	loaded := eval[bool](t, ctx, axe+";\ntypeof axe === 'object'")
	require.True(t, loaded, "axe-core loaded on %s", page)
	found := eval[[]axeViolation](t, ctx, `axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
		.filter(v => v.impact === 'serious' || v.impact === 'critical')
		.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))})))`,
		chromedp.EvalAwaitPromise)
	require.Empty(t, found, "axe-core: serious or critical accessibility violations on %s", page)
}

// api calls the node's API as a test client would.
func api(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	} else {
		req.Header.Set("X-Tenant-Id", "tnt_demo") // demo mode: the header alone
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func createRun(t *testing.T, base, token, agent, input string) string {
	t.Helper()
	code, out := api(t, "POST", base+"/v1/agents/"+agent+"/runs", token, map[string]any{"input": input})
	require.Equal(t, 201, code, "%v", out)
	return out["run"].(map[string]any)["run_id"].(string)
}

func runStatus(t *testing.T, base, token, id string) string {
	t.Helper()
	code, out := api(t, "GET", base+"/v1/runs/"+id, token, nil)
	require.Equal(t, 200, code, "%v", out)
	return out["run"].(map[string]any)["status"].(string)
}

// signIn types a token into the sign-in form and waits for the runs page.
func signIn(t *testing.T, ctx context.Context, base, token string) {
	t.Helper()
	run(t, ctx, chromedp.Navigate(base+"/console/signin"), chromedp.WaitVisible(chromedp.CSS(`#token`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), token), chromedp.Click(chromedp.CSS(`form.signin button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#runs-body`)))
}

// TestConsoleInBrowser drives the console in headless Chromium against a
// real node in dev mode (so sign-in is needed) through the gateway: sign
// in with a token, watch a run created through the API appear and
// complete live, read its timeline, cancel a running run from the UI, see
// the usage charts change, keep another tenant's run out of reach, let a
// platform admin switch tenants, and check each page with axe-core.
func TestConsoleInBrowser(t *testing.T) {
	axe := needBrowser(t)
	shots := screenshotDir(t)

	// A tool call that holds until the run is canceled, so a run stays
	// running long enough to cancel from the UI.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Minute):
		}
		fmt.Fprint(w, "slow answer")
	}))
	defer slow.Close()

	node := testnode.Start(t, testnode.Options{Mode: "dev", Services: []string{"orchestrator", "model-policy", "gateway"},
		Env: []string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1", "AGENTOS_CONSOLE_TRACE_URL=http://127.0.0.1:16686/trace/{trace_id}"}})
	base := node.URL("gateway")
	creds := node.Credentials()
	tenantAdmin, platformAdmin := creds.TenantAdmin.Token, creds.PlatformAdmin.Token

	code, out := api(t, "PUT", base+"/v1/admin/agents/agt_slow", tenantAdmin, map[string]any{"agent": map[string]any{
		"name": "slow", "model_ref": "tier:fast", "instructions": "Fetch the URL the user gives, then summarise it.",
		"tools": []string{"tool.http.fetch"}, "defaults": map[string]any{"max_steps": 4, "timeout_ms": 120000}}})
	require.Contains(t, []int{200, 201}, code, "%v", out)
	code, out = api(t, "PUT", base+"/v1/admin/agents/agt_gated", tenantAdmin, map[string]any{"agent": map[string]any{
		"name": "gated", "model_ref": "tier:fast", "instructions": "Echo the user's text with the echo tool.",
		"tools": []string{"tool.echo"}, "require_approval": []string{"tool.echo"}}})
	require.Contains(t, []int{200, 201}, code, "%v", out)

	ctx := browser(t)

	// The console needs a sign-in in dev mode; each page has its URL.
	run(t, ctx, chromedp.Navigate(base+"/console/runs"), chromedp.WaitVisible(chromedp.CSS(`#token`)))
	require.Contains(t, location(t, ctx), "/console/signin?next=")
	checkA11y(t, ctx, axe, "sign-in")

	// A refused token stays on the sign-in page with the API's answer.
	run(t, ctx, chromedp.SendKeys(chromedp.CSS(`#token`), "not-a-token"), chromedp.Click(chromedp.CSS(`form.signin button[type=submit]`)))
	eventually(t, ctx, "refused token message", func() bool { return strings.Contains(text(t, ctx, "#signin-status"), "refused") })

	signIn(t, ctx, base, tenantAdmin)
	checkA11y(t, ctx, axe, "runs")

	// A run created through the API appears and completes live: the page
	// is not reloaded.
	runA := createRun(t, base, tenantAdmin, "agt_sample_echo_v1", "hello from the browser test")
	row := fmt.Sprintf(`tr[data-run-id=%q] .status`, runA)
	eventually(t, ctx, "the new run on the runs page", func() bool { return text(t, ctx, row) != "" })
	eventually(t, ctx, "the run completed on the runs page", func() bool { return text(t, ctx, row) == "completed" })
	screenshot(t, ctx, shots, "runs-first")

	// Its timeline: model calls with model, tokens, latency and cost; the
	// tool call with arguments and result; the trace id linked.
	run(t, ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-run-id=%q] a`, runA))),
		chromedp.WaitVisible(chromedp.CSS(`li[data-type="agentos.run.completed"]`)))
	require.Equal(t, base+"/console/runs/"+runA, location(t, ctx))
	model := text(t, ctx, `li[data-type="agentos.model.completed"]`)
	for _, want := range []string{"Model", "builtin", "Tokens", "in ·", "Latency", "Cost"} {
		require.Contains(t, model, want)
	}
	eventually(t, ctx, "the model call's cost from the ledger", func() bool {
		return strings.HasPrefix(text(t, ctx, `li[data-type="agentos.model.completed"] [data-cost-index="0"]`), "$")
	})
	require.Contains(t, text(t, ctx, `li[data-type="agentos.tool.call.requested"]`), "tool.echo")
	require.Contains(t, text(t, ctx, `li[data-type="agentos.tool.call.completed"]`), "Result")
	traceHref := eval[string](t, ctx, `(document.querySelector('.facts a[href^="http://127.0.0.1:16686/trace/"]') || {}).href || ""`)
	require.Regexp(t, `^http://127\.0\.0\.1:16686/trace/[0-9a-f]{32}$`, traceHref)
	screenshot(t, ctx, shots, "run-timeline")
	checkA11y(t, ctx, axe, "run timeline")

	// Cancel a running run from its page.
	runSlow := createRun(t, base, tenantAdmin, "agt_slow", slow.URL+"/wait")
	run(t, ctx, chromedp.Navigate(base+"/console/runs/"+runSlow),
		chromedp.WaitVisible(chromedp.CSS(`li[data-type="agentos.tool.call.requested"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#cancel`)))
	require.Equal(t, "running", runStatus(t, base, tenantAdmin, runSlow))
	run(t, ctx, chromedp.Click(chromedp.CSS(`#cancel`)))
	eventually(t, ctx, "the canceled run's timeline", func() bool { return text(t, ctx, `li[data-type="agentos.run.canceled"]`) != "" })
	require.Equal(t, "canceled", runStatus(t, base, tenantAdmin, runSlow))
	eventually(t, ctx, "the cancel answer", func() bool { return strings.Contains(text(t, ctx, `#action-status`), "canceled") })

	// Approve the tool call a run waits on.
	runGated := createRun(t, base, tenantAdmin, "agt_gated", "approve me")
	run(t, ctx, chromedp.Navigate(base+"/console/runs/"+runGated),
		chromedp.WaitVisible(chromedp.CSS(`li[data-type="agentos.run.requires_action"]`)), chromedp.WaitVisible(chromedp.CSS(`#approve`)))
	require.Contains(t, text(t, ctx, `li[data-type="agentos.run.requires_action"]`), "tool.echo")
	checkA11y(t, ctx, axe, "run awaiting approval")
	run(t, ctx, chromedp.Click(chromedp.CSS(`#approve`)))
	eventually(t, ctx, "the approved run completing", func() bool { return text(t, ctx, `li[data-type="agentos.run.completed"]`) != "" })
	require.Contains(t, text(t, ctx, `li[data-type="agentos.run.resumed"]`), "approve")
	require.Equal(t, "completed", runStatus(t, base, tenantAdmin, runGated))

	// The usage charts change when runs complete.
	run(t, ctx, chromedp.Navigate(base+"/console/usage"), chromedp.WaitVisible(chromedp.CSS(`#chart-runs`)))
	total := func() int {
		n, _ := strconv.Atoi(strings.ReplaceAll(text(t, ctx, "#total-runs"), ",", ""))
		return n
	}
	tokens := func() int {
		n, _ := strconv.Atoi(strings.ReplaceAll(text(t, ctx, "#total-tokens"), ",", ""))
		return n
	}
	before, tokensBefore := total(), tokens()
	require.GreaterOrEqual(t, before, 2)
	runB := createRun(t, base, tenantAdmin, "agt_sample_echo_v1", "one more for the charts")
	eventually(t, ctx, "the runs total going up", func() bool { return total() > before })
	eventually(t, ctx, "the tokens total going up", func() bool { return tokens() > tokensBefore })
	bars := eval[int](t, ctx, `document.querySelectorAll('#chart-runs rect.bar').length + document.querySelectorAll('#chart-tokens rect.bar').length`)
	require.Positive(t, bars, "the charts draw bars")
	require.Equal(t, "completed", runStatus(t, base, tenantAdmin, runB))
	screenshot(t, ctx, shots, "usage")
	checkA11y(t, ctx, axe, "usage")

	// A thread and its messages.
	code, out = api(t, "POST", base+"/v1/threads", tenantAdmin, map[string]any{"metadata": map[string]any{"topic": "console"}})
	require.Equal(t, 201, code, "%v", out)
	threadID := out["thread"].(map[string]any)["thread_id"].(string)
	code, out = api(t, "POST", base+"/v1/threads/"+threadID+"/runs", tenantAdmin, map[string]any{"agent_id": "agt_sample_echo_v1", "input": "first turn"})
	require.Equal(t, 201, code, "%v", out)
	turn := out["run"].(map[string]any)["run_id"].(string)
	require.Eventually(t, func() bool { return runStatus(t, base, tenantAdmin, turn) == "completed" }, 60*time.Second, 100*time.Millisecond)
	run(t, ctx, chromedp.Navigate(base+"/console/threads"), chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`a[href="/console/threads/%s"]`, threadID))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href="/console/threads/%s"]`, threadID))), chromedp.WaitVisible(chromedp.CSS(`li.message.role-user`)))
	require.Contains(t, text(t, ctx, `li.message.role-user`), "first turn")
	require.Contains(t, text(t, ctx, `ol.messages`), "assistant")
	checkA11y(t, ctx, axe, "thread")
	screenshot(t, ctx, shots, "thread")

	// The other pages load and pass axe-core.
	for _, p := range []struct{ path, ready string }{
		{"/console/threads", "table"},
		{"/console/budgets", "#budget-h"},
		{"/console/audit", "#chain-status.ok"},
		{"/console/replicas", "#ready-status"},
	} {
		run(t, ctx, chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready)))
		checkA11y(t, ctx, axe, p.path)
		require.NotRegexp(t, `(^|\n)(null|undefined)(\n|$)`, eval[string](t, ctx, `document.querySelector('main').innerText`), p.path)
		screenshot(t, ctx, shots, strings.TrimPrefix(p.path, "/console/"))
	}
	// The gateway's pools as its /readyz tells them: this node runs no
	// federation service, so that pool has no healthy replica.
	require.Contains(t, text(t, ctx, "#ready-status"), "no healthy upstream in federation")
	require.Equal(t, "orchestrator11", text(t, ctx, `tr[data-pool="orchestrator"]`))
	require.Equal(t, "federation01", text(t, ctx, `tr[data-pool="federation"]`))

	// The runs page again, now with completed, canceled and approved runs.
	run(t, ctx, chromedp.Navigate(base+"/console/runs"), chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-run-id=%q]`, runSlow))))
	screenshot(t, ctx, shots, "runs")

	// Tenant B's user cannot reach tenant A's run by its URL.
	code, out = api(t, "POST", base+"/v1/admin/tenants", platformAdmin, map[string]any{"tenant_id": "tnt_console_b", "name": "Console B"})
	require.Equal(t, 201, code, "%v", out)
	code, out = api(t, "POST", base+"/v1/admin/tenants/tnt_console_b/tokens", platformAdmin, map[string]any{"principal_id": "usr_console_b",
		"scopes": []string{"runs:create", "runs:read", "runs:cancel", "agents:read"}, "roles": []string{"tenant_user"}})
	require.Equal(t, 201, code, "%v", out)
	tokenB := out["token"].(map[string]any)["secret"].(string)
	tabB := tab(t, ctx)
	signIn(t, tabB, base, tokenB)
	run(t, tabB, chromedp.Navigate(base+"/console/runs/"+runA), chromedp.WaitVisible(chromedp.CSS(`#not-found`)))
	require.Contains(t, text(t, tabB, "h1"), "Run not found")
	require.NotContains(t, text(t, tabB, "main"), "hello from the browser test")
	run(t, tabB, chromedp.Navigate(base+"/console/runs"), chromedp.WaitVisible(chromedp.CSS(`#runs-body`)))
	require.Contains(t, text(t, tabB, "#runs-body"), "No runs match")
	checkA11y(t, tabB, axe, "run not found")

	// A platform admin switches tenants.
	tabAdmin := tab(t, ctx)
	signIn(t, tabAdmin, base, platformAdmin)
	eventually(t, tabAdmin, "the first tenant's run", func() bool { return text(t, tabAdmin, fmt.Sprintf(`tr[data-run-id=%q]`, runA)) != "" })
	run(t, tabAdmin, chromedp.SetValue(chromedp.CSS(`#tenant-switch`), "tnt_console_b"))
	eval[bool](t, tabAdmin, `document.querySelector('#tenant-switch').dispatchEvent(new Event('change'))`)
	eventually(t, tabAdmin, "tenant B's empty run list", func() bool { return strings.Contains(text(t, tabAdmin, "#runs-body"), "No runs match") })
}

// TestConsoleDemoModeOpensWithoutSignIn checks that a demo node's
// console, served by the orchestrator, opens on the demo tenant.
func TestConsoleDemoModeOpensWithoutSignIn(t *testing.T) {
	axe := needBrowser(t)
	node := testnode.Start(t, testnode.Options{Mode: "demo", Services: []string{"orchestrator", "model-policy"}})
	base := node.URL("orchestrator")
	ctx := browser(t)
	run(t, ctx, chromedp.Navigate(base+"/console"), chromedp.WaitVisible(chromedp.CSS(`#runs-body`)))
	require.Equal(t, base+"/console/runs", location(t, ctx))
	require.Contains(t, text(t, ctx, "#session"), "Demo tenant tnt_demo")
	id := createRun(t, base, "", "agt_sample_echo_v1", "demo")
	row := fmt.Sprintf(`tr[data-run-id=%q] .status`, id)
	eventually(t, ctx, "the demo run completed", func() bool { return text(t, ctx, row) == "completed" })
	checkA11y(t, ctx, axe, "demo runs")
}

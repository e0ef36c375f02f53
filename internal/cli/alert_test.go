package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/alert"
	"github.com/nexixai/agentos/internal/alert/alerttest"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/supervisor"
)

// runTestAlert runs `agentos test-alert` with envFile contents and the
// services at the given URLs, blind to the developer's environment.
func runTestAlert(t *testing.T, env string, orchURL, mpURL, fedURL string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	envFile := filepath.Join(dir, "agentos.env")
	require.NoError(t, os.WriteFile(envFile, []byte(env), 0o600))
	cmd := testAlertCmd(func(string) (string, bool) { return "", false })
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--env-file", envFile, "--home", dir, "--stack-id", "stk_alert_test",
		"--orchestrator-url", orchURL, "--model-policy-url", mpURL, "--federation-url", fedURL})
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func alertHealthServer(t *testing.T, service string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/health" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"ok","service":%q,"version":"9.9.9"}`, service)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func alertClosedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return "http://" + addr
}

func alertExitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *ExitError
	require.True(t, errors.As(err, &ee), "want *ExitError, got %v", err)
	return ee.Code
}

func TestTestAlertSends(t *testing.T) {
	t.Parallel()
	smtp := alerttest.Start(t, nil)
	orch, mp := alertHealthServer(t, "agent-orchestrator"), alertHealthServer(t, "model-policy")
	fed := alertClosedURL(t)
	env := "AGENTOS_ALERT_SMTP_ADDR=" + smtp.Addr + "\nAGENTOS_ALERT_FROM=agentos@example.com\nAGENTOS_ALERT_TO=ops@example.com,oncall@example.com\n"
	out, err := runTestAlert(t, env, orch.URL, mp.URL, fed)
	require.NoError(t, err, out)
	require.Contains(t, out, "test alert sent: accepted by "+smtp.Addr+" for ops@example.com, oncall@example.com")

	got := smtp.Deliveries()
	require.Len(t, got, 1)
	require.Equal(t, []string{"ops@example.com", "oncall@example.com"}, got[0].To)
	m, err := got[0].Parse()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(m.Subject, "AgentOS test alert from stk_alert_test at "), m.Subject)
	require.Contains(t, m.Body, "- orchestrator "+orch.URL+"/v1/health: ok, version 9.9.9\n  metrics: "+orch.URL+"/metrics")
	require.Contains(t, m.Body, "- model-policy "+mp.URL+"/v1/health: ok, version 9.9.9")
	require.Contains(t, m.Body, "- federation "+fed+"/v1/federation/health: DOWN: ")
	require.Contains(t, m.Body, "stack_id: stk_alert_test")
	require.Contains(t, m.Body, "alertname: AgentOSTestAlert")
}

func TestTestAlertNotConfigured(t *testing.T) {
	t.Parallel()
	u := alertClosedURL(t)
	out, err := runTestAlert(t, "", u, u, u)
	require.Equal(t, 2, alertExitCode(t, err))
	require.Contains(t, out, "alert SMTP is not configured: missing AGENTOS_ALERT_SMTP_ADDR, AGENTOS_ALERT_FROM, AGENTOS_ALERT_TO")
	require.Contains(t, out, "AGENTOS_ALERT_SMTP_STARTTLS=true")

	out, err = runTestAlert(t, "AGENTOS_ALERT_SMTP_ADDR=127.0.0.1:25\n", u, u, u)
	require.Equal(t, 2, alertExitCode(t, err))
	require.Contains(t, out, "missing AGENTOS_ALERT_FROM, AGENTOS_ALERT_TO")
}

func TestTestAlertRecipientRefused(t *testing.T) {
	t.Parallel()
	smtp := alerttest.Start(t, func(s *alerttest.Server) { s.RejectRcpt = map[string]bool{"nobody@example.com": true} })
	u := alertClosedURL(t)
	env := "AGENTOS_ALERT_SMTP_ADDR=" + smtp.Addr + "\nAGENTOS_ALERT_FROM=agentos@example.com\nAGENTOS_ALERT_TO=nobody@example.com\n"
	out, err := runTestAlert(t, env, u, u, u)
	require.Equal(t, 1, alertExitCode(t, err))
	require.Contains(t, out, "test alert FAILED: smtp rcpt to nobody@example.com: 550")
	require.Contains(t, out, "refused a recipient in AGENTOS_ALERT_TO")
	require.Empty(t, smtp.Deliveries())
}

func TestReportAlertStatus(t *testing.T) {
	t.Parallel()
	st := reportAlertStatus(alertEnvOf(t, nil))
	require.Equal(t, "not_configured", st.Status)
	st = reportAlertStatus(alertEnvOf(t, map[string]string{"AGENTOS_ALERT_SMTP_ADDR": "smtp.example.com:587",
		"AGENTOS_ALERT_FROM": "a@example.com", "AGENTOS_ALERT_TO": "ops@example.com"}))
	require.Equal(t, "configured", st.Status)
	require.Contains(t, st.Detail, "smtp.example.com:587 to ops@example.com")
	st = reportAlertStatus(alertEnvOf(t, map[string]string{"AGENTOS_ALERT_SMTP_ADDR": "smtp.example.com"}))
	require.True(t, strings.HasPrefix(st.Status, "failed: "), st.Status)
	require.Contains(t, st.Status, "AGENTOS_ALERT_FROM")
}

// alertEnvOf is the alert settings config.Load resolves from m.
func alertEnvOf(t *testing.T, m map[string]string) alert.Settings {
	t.Helper()
	c, err := config.Load(func(k string) (string, bool) { v, ok := m[k]; return v, ok }, filepath.Join(t.TempDir(), "none.env"))
	require.NoError(t, err)
	return alertSettings(c)
}

// alertNode is a node whose services are the given base URLs and whose
// env file holds env.
func alertNode(t *testing.T, env string, urls map[string]string) *supervisor.Node {
	t.Helper()
	dir := t.TempDir()
	envFile := filepath.Join(dir, "agentos.env")
	require.NoError(t, os.WriteFile(envFile, []byte(env), 0o600))
	cfg, err := config.Load(func(string) (string, bool) { return "", false }, envFile)
	require.NoError(t, err)
	n := &supervisor.Node{Cfg: cfg, EnvFile: envFile, HTTP: &http.Client{}}
	n.Cfg.Home, n.Cfg.StackID, n.Cfg.Region, n.Cfg.Mode = dir, "stk_validate_alert", "local", "demo"
	for _, name := range []string{"model-policy", "orchestrator"} {
		n.Services = append(n.Services, supervisor.Service{Name: name, URL: urls[name], HealthPath: "/v1/health"})
	}
	return n
}

func TestValidateTestAlertCheck(t *testing.T) {
	t.Parallel()
	smtp := alerttest.Start(t, func(s *alerttest.Server) { s.RejectRcpt = map[string]bool{"nobody@example.com": true} })
	urls := map[string]string{"orchestrator": alertHealthServer(t, "agent-orchestrator").URL, "model-policy": alertHealthServer(t, "model-policy").URL}
	env := func(to string) string {
		return "AGENTOS_ALERT_SMTP_ADDR=" + smtp.Addr + "\nAGENTOS_ALERT_FROM=agentos@example.com\nAGENTOS_ALERT_TO=" + to + "\n"
	}
	validate := func(n *supervisor.Node, prev error) (*Report, error) {
		var out bytes.Buffer
		p := NewProgress(&out, false)
		rep := newReport("validate", n, "local")
		v := &validator{n: n, p: p, rep: rep}
		err := finishReport(&out, n, rep, p, v.testAlertCheck(context.Background(), prev))
		return rep, err
	}

	// Configured: the report starts "configured", the check sends and the
	// report says "sent".
	n := alertNode(t, env("ops@example.com"), urls)
	require.Equal(t, "configured", newReport("validate", n, "local").Alerts.Status)
	rep, err := validate(n, nil)
	require.NoError(t, err)
	js := readReport(t, rep.Reports.JSON)
	require.Equal(t, "sent", js.Alerts.Status)
	require.Contains(t, js.Alerts.Detail, "accepted by "+smtp.Addr+" for ops@example.com")
	require.Equal(t, "test alert", js.Smoke[len(js.Smoke)-1].Name)
	require.True(t, js.Smoke[len(js.Smoke)-1].OK)
	require.Len(t, smtp.Deliveries(), 1)
	m, err := smtp.Deliveries()[0].Parse()
	require.NoError(t, err)
	require.Contains(t, m.Subject, "from stk_validate_alert at")

	// An earlier failure is kept, and the alert is still sent.
	rep, err = validate(n, errors.New("health failed"))
	require.Error(t, err)
	require.Equal(t, "health failed", rep.Failure.Message)
	require.Equal(t, "sent", rep.Alerts.Status)
	require.Len(t, smtp.Deliveries(), 2)

	// A refused recipient fails validate, naming the check.
	n = alertNode(t, env("nobody@example.com"), urls)
	rep, err = validate(n, nil)
	require.Error(t, err)
	require.Equal(t, "test alert", rep.Failure.Check)
	require.Equal(t, "agentos test-alert", rep.Failure.NextCommand)
	require.True(t, strings.HasPrefix(rep.Alerts.Status, "failed: smtp rcpt to nobody@example.com: 550"), rep.Alerts.Status)
	require.False(t, rep.Smoke[len(rep.Smoke)-1].OK)

	// Not configured: the check fails naming the variables.
	n = alertNode(t, "", urls)
	rep, err = validate(n, nil)
	require.Error(t, err)
	require.Contains(t, rep.Failure.Message, "missing AGENTOS_ALERT_SMTP_ADDR")
	require.Equal(t, "not_configured", rep.Alerts.Status)
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/alert"
	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/supervisor"
)

// testAlertTimeout bounds the health probes plus the SMTP exchange.
const testAlertTimeout = 45 * time.Second

func newTestAlertCmd() *cobra.Command { return testAlertCmd(nil) }

// testAlertCmd is test-alert reading the environment through lookup (nil:
// os.LookupEnv).
func testAlertCmd(lookup config.Lookup) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "test-alert",
		Short: "Send a test alert e-mail through the configured SMTP server",
		Long: `test-alert sends "AgentOS test alert from <stack_id> at <time>" to the
recipients in AGENTOS_ALERT_TO through AGENTOS_ALERT_SMTP_ADDR, with the node's
URLs and each service's /v1/health in the body. It prints where the message was
handed over, or the SMTP step that failed (dial, hello, starttls, auth, mail,
rcpt, data) and the variables to check. The variables are read from the
environment, then from .agentos.env:

  AGENTOS_ALERT_SMTP_ADDR           host:port (required), e.g. smtp.example.com:587
  AGENTOS_ALERT_FROM                sender address (required)
  AGENTOS_ALERT_TO                  comma-separated recipients (required)
  AGENTOS_ALERT_SMTP_USERNAME       SMTP AUTH user (optional)
  AGENTOS_ALERT_SMTP_PASSWORD       SMTP AUTH password, or
  AGENTOS_ALERT_SMTP_PASSWORD_FILE  a file holding it (prod)
  AGENTOS_ALERT_SMTP_STARTTLS       true to require STARTTLS (use with port 587)

Exit status: 0 sent, 1 the SMTP server refused or could not be reached,
2 alerting is not (or wrongly) configured.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cf.lookup = lookup
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		n, err := nodeFromFlags(cf)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		smtpCfg, err := loadAlertConfig(alertSettings(n.Cfg))
		if err != nil {
			fmt.Fprintln(out, err)
			printAlertVars(out)
			return &ExitError{Code: 2}
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), testAlertTimeout)
		defer cancel()
		where, err := sendTestAlert(ctx, n, smtpCfg)
		if err != nil {
			fmt.Fprintf(out, "test alert FAILED: %v\n", err)
			if hint := alertHint(err); hint != "" {
				fmt.Fprintf(out, "  %s\n", hint)
			}
			printAlertVars(out)
			return &ExitError{Code: 1}
		}
		fmt.Fprintf(out, "test alert sent: %s\n", where)
		return nil
	}
	return cmd
}

// alertSettings are the alert settings of a resolved configuration.
func alertSettings(c config.Config) alert.Settings {
	return alert.Settings{Addr: c.AlertSMTPAddr, From: c.AlertFrom, To: c.AlertTo,
		Username: c.AlertSMTPUsername, Password: c.AlertSMTPPassword, StartTLS: c.AlertSMTPStartTLS}
}

// errAlertNotConfigured is returned by loadAlertConfig when no SMTP
// variable is set.
var errAlertNotConfigured = errors.New("alert SMTP is not configured: missing " + strings.Join(alert.RequiredVars, ", "))

// loadAlertConfig is alert.FromSettings with "not configured" as an error
// naming the missing variables.
func loadAlertConfig(s alert.Settings) (alert.SMTPConfig, error) {
	cfg, ok, err := alert.FromSettings(s)
	switch {
	case err != nil:
		return cfg, err
	case !ok:
		return cfg, errAlertNotConfigured
	}
	return cfg, nil
}

// reportAlertStatus is the report's alert status from the configuration
// alone: configured (with the SMTP server and recipients), not_configured,
// or "failed: <why the configuration is invalid>".
func reportAlertStatus(s alert.Settings) AlertStatus {
	cfg, err := loadAlertConfig(s)
	switch {
	case errors.Is(err, errAlertNotConfigured):
		return AlertStatus{Status: "not_configured",
			Detail: "set " + strings.Join(alert.RequiredVars, ", ") + " (see `agentos test-alert --help`), then run `agentos test-alert`; Prometheus/Alertmanager/Grafana: deploy/observability/README.md"}
	case err != nil:
		return AlertStatus{Status: "failed: " + err.Error(), Detail: "fix the AGENTOS_ALERT_* variables, then run `agentos test-alert`"}
	}
	return AlertStatus{Status: "configured",
		Detail: fmt.Sprintf("SMTP %s to %s; prove delivery with `agentos test-alert`", cfg.Addr, strings.Join(cfg.To, ", "))}
}

// testAlertStatus sends the test alert and returns the report status:
// sent, not_configured or "failed: <error>".
func testAlertStatus(ctx context.Context, n *supervisor.Node) (AlertStatus, error) {
	cfg, err := loadAlertConfig(alertSettings(n.Cfg))
	if err != nil {
		st := reportAlertStatus(alertSettings(n.Cfg))
		return st, err
	}
	ctx, cancel := context.WithTimeout(ctx, testAlertTimeout)
	defer cancel()
	where, err := sendTestAlert(ctx, n, cfg)
	if err != nil {
		detail := "check the AGENTOS_ALERT_* variables (agentos test-alert --help)"
		if hint := alertHint(err); hint != "" {
			detail = hint
		}
		return AlertStatus{Status: "failed: " + err.Error(), Detail: detail}, err
	}
	return AlertStatus{Status: "sent", Detail: where}, nil
}

// sendTestAlert mails the test alert of node n and says where it went.
func sendTestAlert(ctx context.Context, n *supervisor.Node, cfg alert.SMTPConfig) (string, error) {
	now := time.Now().UTC()
	a := alert.Alert{
		Subject: fmt.Sprintf("AgentOS test alert from %s at %s", n.Cfg.StackID, now.Format(time.RFC3339)),
		Body:    testAlertBody(ctx, n, now),
		Labels: map[string]string{"alertname": "AgentOSTestAlert", "severity": "info",
			"stack_id": n.Cfg.StackID, "region": n.Cfg.Region},
	}
	if err := alert.Send(ctx, cfg, a); err != nil {
		return "", err
	}
	return fmt.Sprintf("accepted by %s for %s (subject %q)", cfg.Addr, strings.Join(cfg.To, ", "), a.Subject), nil
}

// testAlertBody lists the node, its URLs and each service's health.
func testAlertBody(ctx context.Context, n *supervisor.Node, now time.Time) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "This is a test alert sent by `agentos test-alert` at %s.\n", now.Format(time.RFC3339))
	b.WriteString("If you are reading it, AgentOS alert e-mail reaches you.\n\n")
	fmt.Fprintf(&b, "Node: %s (region %s, mode %s) on host %s\nHome: %s\n\nServices:\n",
		n.Cfg.StackID, n.Cfg.Region, n.Cfg.Mode, host, n.Cfg.Home)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, s := range n.Services {
		state := "ok"
		h, err := apiclient.GetHealth(hctx, n.HTTP, s.URL, s.HealthPath)
		switch {
		case err != nil:
			state = "DOWN: " + err.Error()
		case h.Version != "":
			state = h.Status + ", version " + h.Version
		case h.Status != "":
			state = h.Status
		}
		fmt.Fprintf(&b, "- %s %s%s: %s\n  metrics: %s/metrics\n", s.Name, s.URL, s.HealthPath, state, s.URL)
	}
	b.WriteString("\nPrometheus rules, Alertmanager and Grafana dashboards: deploy/observability/.\n")
	return b.String()
}

// alertHint says what to check for a failed SMTP step.
func alertHint(err error) string {
	var se *alert.SendError
	if !errors.As(err, &se) {
		return ""
	}
	switch se.Step {
	case "dial", "hello":
		return "is " + alert.EnvAddr + " right and the SMTP server reachable from this host (firewall, port 25/587)?"
	case "starttls":
		return "the server's TLS certificate must be valid for the host in " + alert.EnvAddr + "; unset " + alert.EnvStartTLS + " only for a trusted local relay"
	case "auth":
		return "check " + alert.EnvUsername + " and " + alert.EnvPassword + " (or " + alert.EnvPasswordFile + "); most servers only offer AUTH after STARTTLS (" + alert.EnvStartTLS + "=true)"
	case "mail":
		return "the server refused the sender: is " + alert.EnvFrom + " allowed to send through it?"
	case "rcpt":
		return "the server refused a recipient in " + alert.EnvTo + " (unknown user, or relaying denied without AUTH)"
	case "data", "quit":
		return "the server refused the message after accepting the recipients; see its logs"
	}
	return ""
}

func printAlertVars(w io.Writer) {
	fmt.Fprintln(w, "Set (in the environment or .agentos.env):")
	fmt.Fprintln(w, "  "+alert.EnvAddr+"=smtp.example.com:587")
	fmt.Fprintln(w, "  "+alert.EnvFrom+"=agentos@example.com")
	fmt.Fprintln(w, "  "+alert.EnvTo+"=oncall@example.com,ops@example.com")
	fmt.Fprintln(w, "  "+alert.EnvUsername+"=... and "+alert.EnvPassword+"=... (or "+alert.EnvPasswordFile+"=/path)  # if the server needs AUTH")
	fmt.Fprintln(w, "  "+alert.EnvStartTLS+"=true  # port 587")
}

// nodeAlertStatus is the alert status a report of node n starts with
// (n may be nil).
func nodeAlertStatus(n *supervisor.Node) AlertStatus {
	if n == nil {
		return reportAlertStatus(alert.Settings{})
	}
	return reportAlertStatus(alertSettings(n.Cfg))
}

// testAlertCheck is `validate --test-alert`'s extra check: it sends the
// test alert (whatever the validation's outcome, so that the mail carries
// the node's health), records it in the report's smoke results and alert
// status, and returns prev, or the alert's failure when prev is nil.
func (v *validator) testAlertCheck(ctx context.Context, prev error) error {
	start := time.Now()
	st, err := testAlertStatus(ctx, v.n)
	v.rep.Alerts = st
	res := CheckResult{Name: "test alert", OK: err == nil, DurationMs: time.Since(start).Milliseconds(), Detail: st.Detail}
	mark := "pass"
	if err != nil {
		res.Error, res.Detail, mark = err.Error(), "", "FAIL"
	}
	v.rep.Smoke = append(v.rep.Smoke, res)
	v.p.Info("%s  %-26s %5dms  %s", mark, res.Name, res.DurationMs, firstNonEmpty(res.Error, res.Detail))
	if prev != nil || err == nil {
		return prev
	}
	return &checkError{check: "test alert", next: "agentos test-alert", err: err}
}

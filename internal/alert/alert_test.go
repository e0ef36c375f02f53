package alert

import (
	"context"
	"errors"
	"io"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/alert/alerttest"
	"github.com/nexixai/agentos/internal/errs"
)

// settingsOf maps variable names to Settings.
func settingsOf(m map[string]string) Settings {
	return Settings{Addr: m[EnvAddr], From: m[EnvFrom], To: m[EnvTo],
		Username: m[EnvUsername], Password: m[EnvPassword], StartTLS: m[EnvStartTLS]}
}

func parseDelivery(t *testing.T, d alerttest.Delivery) alerttest.Message {
	t.Helper()
	m, err := d.Parse()
	require.NoError(t, err)
	return m
}

func TestSendDelivers(t *testing.T) {
	t.Parallel()
	srv := alerttest.Start(t, nil)
	cfg := SMTPConfig{Addr: srv.Addr, From: "agentos@example.com", To: []string{"ops@example.com", "oncall@example.org"}}
	body := "Node stk_a is fine.\n.leading dot line\nünïcode and a very long line " + strings.Repeat("x", 120)
	err := Send(context.Background(), cfg, Alert{Subject: "AgentOS test alert\r\nBcc: evil@example.com",
		Body: body, Labels: map[string]string{"severity": "info", "alertname": "AgentOSTestAlert"}})
	require.NoError(t, err)

	got := srv.Deliveries()
	require.Len(t, got, 1)
	require.Equal(t, "agentos@example.com", got[0].From)
	require.Equal(t, []string{"ops@example.com", "oncall@example.org"}, got[0].To)
	require.False(t, got[0].TLS)
	p := parseDelivery(t, got[0])
	require.Equal(t, "<agentos@example.com>", p.From)
	require.Equal(t, "<ops@example.com>, <oncall@example.org>", p.To)
	require.Equal(t, "AgentOS test alert Bcc: evil@example.com", p.Subject, "CR/LF in a subject cannot inject headers")
	require.Empty(t, p.Header.Get("Bcc"))
	require.NotEmpty(t, p.Header.Get("Date"))
	require.True(t, strings.HasSuffix(p.Header.Get("Message-ID"), "@example.com>"))
	require.Equal(t, body+"\n\nLabels:\n  alertname: AgentOSTestAlert\n  severity: info\n", p.Body)
}

func TestSendStartTLSAndAuth(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := alerttest.SelfSignedTLS(t)
	srv := alerttest.Start(t, func(s *alerttest.Server) {
		s.TLS, s.User, s.Password = serverTLS, "alerts", "s3cret"
	})
	cfg := SMTPConfig{Addr: srv.Addr, From: "agentos@example.com", To: []string{"ops@example.com"},
		Username: "alerts", Password: "s3cret", StartTLS: true, TLS: clientTLS}
	require.NoError(t, Send(context.Background(), cfg, Alert{Subject: "ünïcode subject", Body: "hello"}))
	got := srv.Deliveries()
	require.Len(t, got, 1)
	require.True(t, got[0].TLS)
	require.Equal(t, "alerts:s3cret", got[0].Auth)
	p := parseDelivery(t, got[0])
	require.Equal(t, "ünïcode subject", p.Subject)
	require.Equal(t, "hello\n", p.Body)
}

func sendErr(t *testing.T, err error) *SendError {
	t.Helper()
	require.Error(t, err)
	var se *SendError
	require.True(t, errors.As(err, &se), "want *SendError, got %T %v", err, err)
	return se
}

func TestSendRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	err = Send(context.Background(), SMTPConfig{Addr: addr, From: "a@example.com", To: []string{"b@example.com"}}, Alert{Subject: "x"})
	se := sendErr(t, err)
	require.Equal(t, "dial", se.Step)
	require.Contains(t, err.Error(), "smtp dial "+addr)
}

func TestSendRcptRejected(t *testing.T) {
	t.Parallel()
	srv := alerttest.Start(t, func(s *alerttest.Server) { s.RejectRcpt = map[string]bool{"nobody@example.com": true} })
	err := Send(context.Background(), SMTPConfig{Addr: srv.Addr, From: "a@example.com",
		To: []string{"ops@example.com", "nobody@example.com"}}, Alert{Subject: "x", Body: "y"})
	se := sendErr(t, err)
	require.Equal(t, "rcpt", se.Step)
	require.Equal(t, "to nobody@example.com", se.Detail)
	require.Contains(t, err.Error(), "550")
	require.Empty(t, srv.Deliveries(), "nothing is delivered when a recipient is refused")
}

func TestSendAuthRejected(t *testing.T) {
	t.Parallel()
	srv := alerttest.Start(t, func(s *alerttest.Server) { s.User, s.Password = "alerts", "right" })
	err := Send(context.Background(), SMTPConfig{Addr: srv.Addr, From: "a@example.com", To: []string{"b@example.com"},
		Username: "alerts", Password: "wrong"}, Alert{Subject: "x"})
	se := sendErr(t, err)
	require.Equal(t, "auth", se.Step)
	require.Contains(t, err.Error(), "535")
}

func TestSendStartTLSNotOffered(t *testing.T) {
	t.Parallel()
	srv := alerttest.Start(t, nil)
	err := Send(context.Background(), SMTPConfig{Addr: srv.Addr, From: "a@example.com", To: []string{"b@example.com"},
		StartTLS: true}, Alert{Subject: "x"})
	se := sendErr(t, err)
	require.Equal(t, "starttls", se.Step)
	require.Contains(t, err.Error(), EnvStartTLS)
	require.Empty(t, srv.Deliveries())
}

func TestSendAuthNotOffered(t *testing.T) {
	t.Parallel()
	srv := alerttest.Start(t, nil)
	err := Send(context.Background(), SMTPConfig{Addr: srv.Addr, From: "a@example.com", To: []string{"b@example.com"},
		Username: "u", Password: "p"}, Alert{Subject: "x"})
	require.Equal(t, "auth", sendErr(t, err).Step)
}

// A server that accepts but never greets: cancelling the context ends Send.
func TestSendHonoursContext(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		held <- c
		cancel()
	}()
	err = Send(ctx, SMTPConfig{Addr: ln.Addr().String(), From: "a@example.com", To: []string{"b@example.com"}}, Alert{Subject: "x"})
	// The cancel may land while the dial is still returning or while
	// waiting for the greeting; either way Send ends, naming the step.
	se := sendErr(t, err)
	require.Contains(t, []string{"dial", "hello"}, se.Step)
	require.ErrorIs(t, err, context.Canceled)
	(<-held).Close()
}

func TestFromSettings(t *testing.T) {
	t.Parallel()
	full := map[string]string{EnvAddr: "smtp.example.com:587", EnvFrom: "AgentOS <agentos@example.com>",
		EnvTo: "ops@example.com, Oncall <oncall@example.org>,"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range full {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	cfg, ok, err := FromSettings(settingsOf(nil))
	require.NoError(t, err)
	require.False(t, ok, "nothing set: not configured, no error")
	require.Equal(t, SMTPConfig{}, cfg)

	cfg, ok, err = FromSettings(settingsOf(full))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, SMTPConfig{Addr: "smtp.example.com:587", From: "agentos@example.com",
		To: []string{"ops@example.com", "oncall@example.org"}}, cfg)

	cfg, ok, err = FromSettings(settingsOf(with(EnvUsername, "alerts", EnvPassword, "from-file", EnvStartTLS, "true")))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "alerts", cfg.Username)
	require.Equal(t, "from-file", cfg.Password)
	require.True(t, cfg.StartTLS)

	cfg, ok, err = FromSettings(settingsOf(with(EnvUsername, "alerts", EnvPassword, "pw")))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "pw", cfg.Password)

	bad := []struct {
		name  string
		env   map[string]string
		field string
	}{
		{"only addr", map[string]string{EnvAddr: "smtp.example.com:25"}, EnvFrom},
		{"missing to", with(EnvTo, ""), EnvTo},
		{"addr without port", with(EnvAddr, "smtp.example.com"), EnvAddr},
		{"addr bad port", with(EnvAddr, "smtp.example.com:99999"), EnvAddr},
		{"bad from", with(EnvFrom, "not an address"), EnvFrom},
		{"bad to", with(EnvTo, "ops@example.com, nope"), EnvTo},
		{"empty to list", with(EnvTo, " , ,"), EnvTo},
		{"bad starttls", with(EnvStartTLS, "maybe"), EnvStartTLS},
		{"password without user", with(EnvPassword, "pw"), EnvUsername},
		{"user without password", with(EnvUsername, "alerts"), EnvPassword},
	}
	for _, tc := range bad {
		_, ok, err := FromSettings(settingsOf(tc.env))
		require.False(t, ok, tc.name)
		require.Error(t, err, tc.name)
		require.Equal(t, errs.InvalidRequest, errs.CodeOf(err), tc.name)
		require.Contains(t, err.Error(), tc.field, tc.name)
	}
}

func TestBuildMessageDefaults(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	msg, err := buildMessage(SMTPConfig{From: "a@example.com", To: []string{"b@example.com"}}, Alert{}, now)
	require.NoError(t, err)
	m, err := mail.ReadMessage(strings.NewReader(string(msg)))
	require.NoError(t, err)
	require.Equal(t, "AgentOS alert", m.Header.Get("Subject"))
	d, err := m.Header.Date()
	require.NoError(t, err)
	require.True(t, d.Equal(now))
}

func FuzzFromSettings(f *testing.F) {
	f.Add("smtp.example.com:587", "a@example.com", "b@example.com,c@example.com", "", "", "true")
	f.Add("[::1]:25", "A <a@example.com>", "b@example.com", "u", "p", "0")
	f.Add(":25", "a", "", "", "", "")
	f.Fuzz(func(t *testing.T, addr, from, to, user, pw, starttls string) {
		env := map[string]string{EnvAddr: addr, EnvFrom: from, EnvTo: to, EnvUsername: user, EnvPassword: pw, EnvStartTLS: starttls}
		cfg, ok, err := FromSettings(settingsOf(env))
		if !ok {
			if err != nil {
				require.Equal(t, errs.InvalidRequest, errs.CodeOf(err))
			}
			return
		}
		require.NoError(t, err)
		require.NotEmpty(t, cfg.To)
		for _, a := range append([]string{cfg.From}, cfg.To...) {
			require.NotContains(t, a, "\n")
			require.NotContains(t, a, "\r")
		}
		_, _, err = net.SplitHostPort(cfg.Addr)
		require.NoError(t, err)
	})
}

func FuzzBuildMessage(f *testing.F) {
	f.Add("AgentOS test alert", "body\nline two", "severity", "info")
	f.Add("x\r\nBcc: y@example.com", ".\r\n.\n", "k", "v\r\nX: y")
	f.Add("ünïcode =?utf-8?q?x?=", "", "", "")
	f.Fuzz(func(t *testing.T, subject, body, lk, lv string) {
		msg, err := buildMessage(SMTPConfig{From: "a@example.com", To: []string{"b@example.com"}},
			Alert{Subject: subject, Body: body, Labels: map[string]string{lk: lv}}, time.Unix(0, 0))
		require.NoError(t, err)
		m, err := mail.ReadMessage(strings.NewReader(string(msg)))
		require.NoError(t, err)
		for k := range m.Header {
			switch k {
			case "From", "To", "Subject", "Date", "Message-Id", "Mime-Version", "Content-Type", "Content-Transfer-Encoding", "X-Mailer":
			default:
				t.Fatalf("unexpected header %q: the alert content injected a header", k)
			}
		}
		require.Equal(t, "<b@example.com>", m.Header.Get("To"))
		_, err = io.ReadAll(quotedprintable.NewReader(m.Body))
		require.NoError(t, err)
	})
}

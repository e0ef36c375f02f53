// Package alert sends operator alerts by e-mail (SMTP). It is what
// `agentos test-alert` and `agentos validate --test-alert` use to prove that
// the mail path Alertmanager relies on actually delivers. The SMTP settings
// are the AGENTOS_ALERT_* configuration (internal/config resolves them,
// FromSettings validates them).
//
// Send speaks SMTP with net/smtp over a connection dialled with the caller's
// context, and every error it returns is a *SendError naming the SMTP step
// that failed (dial, hello, starttls, auth, mail, rcpt, data, quit).
package alert

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/errs"
)

// The settings' variable names, which errors and hints name.
const (
	EnvAddr         = "AGENTOS_ALERT_SMTP_ADDR"          // host:port of the SMTP server (required)
	EnvFrom         = "AGENTOS_ALERT_FROM"               // sender address (required)
	EnvTo           = "AGENTOS_ALERT_TO"                 // comma-separated recipients (required)
	EnvUsername     = "AGENTOS_ALERT_SMTP_USERNAME"      // SMTP AUTH PLAIN user (optional)
	EnvPassword     = "AGENTOS_ALERT_SMTP_PASSWORD"      // SMTP AUTH password (or use EnvPasswordFile)
	EnvPasswordFile = "AGENTOS_ALERT_SMTP_PASSWORD_FILE" // file holding the password (prod)
	EnvStartTLS     = "AGENTOS_ALERT_SMTP_STARTTLS"      // true: require STARTTLS before AUTH and MAIL
)

// RequiredVars are the variables that must all be set for alerting to be
// configured.
var RequiredVars = []string{EnvAddr, EnvFrom, EnvTo}

// Settings are the alert settings as configured (internal/config fields
// AlertSMTPAddr...), not yet validated.
type Settings struct {
	Addr     string // AGENTOS_ALERT_SMTP_ADDR
	From     string // AGENTOS_ALERT_FROM
	To       string // AGENTOS_ALERT_TO, comma-separated
	Username string // AGENTOS_ALERT_SMTP_USERNAME
	Password string // AGENTOS_ALERT_SMTP_PASSWORD, or the content of its _FILE
	StartTLS string // AGENTOS_ALERT_SMTP_STARTTLS
}

// DefaultTimeout bounds a whole Send when ctx has no deadline.
const DefaultTimeout = 30 * time.Second

// SMTPConfig says where and how alerts are mailed.
type SMTPConfig struct {
	Addr     string   // host:port of the SMTP server
	From     string   // envelope and header sender
	To       []string // recipients (envelope and header)
	Username string   // SMTP AUTH PLAIN user; empty: no AUTH
	Password string   // SMTP AUTH password
	StartTLS bool     // upgrade with STARTTLS (required when true) before AUTH and MAIL
	// TLS optionally overrides the STARTTLS client configuration (custom
	// roots); nil: system roots and the host of Addr as server name.
	TLS *tls.Config
}

// Alert is one message.
type Alert struct {
	Subject string
	Body    string
	Labels  map[string]string // appended to the body as "key: value" lines, sorted
}

// FromSettings validates s. It returns configured=false and a nil error
// when none of the required settings is set; an *errs.Error
// (invalid_request, naming the variable) when some are set but the set is
// incomplete or invalid; and configured=true when alerts can be sent.
func FromSettings(s Settings) (SMTPConfig, bool, error) {
	vals := map[string]string{EnvAddr: s.Addr, EnvFrom: s.From, EnvTo: s.To,
		EnvUsername: s.Username, EnvStartTLS: s.StartTLS}
	get := func(k string) string { return strings.TrimSpace(vals[k]) }
	var cfg SMTPConfig
	var missing []string
	for _, k := range RequiredVars {
		if get(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) == len(RequiredVars) {
		return cfg, false, nil
	}
	if len(missing) > 0 {
		return cfg, false, errs.Field(missing[0], "alert SMTP is partly configured: missing %s", strings.Join(missing, ", "))
	}
	cfg.Addr = get(EnvAddr)
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" || !validPort(port) {
		return cfg, false, errs.Field(EnvAddr, "%s=%q: want host:port, e.g. smtp.example.com:587", EnvAddr, cfg.Addr)
	}
	from, err := mail.ParseAddress(get(EnvFrom))
	if err != nil {
		return cfg, false, errs.Field(EnvFrom, "%s=%q: not an e-mail address: %v", EnvFrom, get(EnvFrom), err)
	}
	cfg.From = from.Address
	for _, part := range strings.Split(get(EnvTo), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		to, err := mail.ParseAddress(part)
		if err != nil {
			return cfg, false, errs.Field(EnvTo, "%s: %q is not an e-mail address: %v", EnvTo, part, err)
		}
		cfg.To = append(cfg.To, to.Address)
	}
	if len(cfg.To) == 0 {
		return cfg, false, errs.Field(EnvTo, "%s lists no recipient", EnvTo)
	}
	cfg.Username = get(EnvUsername)
	cfg.Password = s.Password
	if cfg.Username == "" && cfg.Password != "" {
		return cfg, false, errs.Field(EnvUsername, "a password is set but %s is empty", EnvUsername)
	}
	if cfg.Username != "" && cfg.Password == "" {
		return cfg, false, errs.Field(EnvPassword, "%s is set but neither %s nor %s", EnvUsername, EnvPassword, EnvPasswordFile)
	}
	if s := get(EnvStartTLS); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return cfg, false, errs.Field(EnvStartTLS, "%s=%q: want true or false", EnvStartTLS, s)
		}
		cfg.StartTLS = b
	}
	return cfg, true, nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

// SendError is a failed Send: Step is the SMTP step that failed (dial,
// hello, starttls, auth, mail, rcpt, data, quit) and Detail what it was
// doing (the address dialled, the recipient refused...).
type SendError struct {
	Step   string
	Detail string
	Err    error
}

func (e *SendError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("smtp %s %s: %v", e.Step, e.Detail, e.Err)
	}
	return fmt.Sprintf("smtp %s: %v", e.Step, e.Err)
}

func (e *SendError) Unwrap() error { return e.Err }

// Send mails a to cfg.To through cfg.Addr. The whole exchange is bounded by
// ctx (DefaultTimeout when ctx has no deadline). Errors are *SendError.
func Send(ctx context.Context, cfg SMTPConfig, a Alert) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	if len(cfg.To) == 0 {
		return &SendError{Step: "rcpt", Err: errors.New("no recipient configured")}
	}
	msg, err := buildMessage(cfg, a, time.Now())
	if err != nil {
		return &SendError{Step: "data", Detail: "compose message", Err: err}
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return &SendError{Step: "dial", Detail: cfg.Addr, Err: err}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return &SendError{Step: "dial", Detail: cfg.Addr, Err: ctxErr(ctx, err)}
	}
	// The deadline bounds every read and write; closing on cancel unblocks
	// them early.
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	c, err := smtp.NewClient(conn, host)
	if err != nil {
		_ = conn.Close()
		return &SendError{Step: "hello", Detail: "greeting from " + cfg.Addr, Err: ctxErr(ctx, err)}
	}
	defer c.Close()
	fail := func(step, detail string, err error) error {
		return &SendError{Step: step, Detail: detail, Err: ctxErr(ctx, err)}
	}
	if err := c.Hello(localName()); err != nil {
		return fail("hello", "", err)
	}
	if cfg.StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fail("starttls", "", fmt.Errorf("%s does not offer STARTTLS (unset %s to send in clear)", cfg.Addr, EnvStartTLS))
		}
		tc := cfg.TLS
		if tc == nil {
			tc = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(tc); err != nil {
			return fail("starttls", "", err)
		}
	}
	if cfg.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return fail("auth", "", fmt.Errorf("%s does not offer AUTH (enable %s or unset %s)", cfg.Addr, EnvStartTLS, EnvUsername))
		}
		if err := c.Auth(smtp.PlainAuth("", cfg.Username, cfg.Password, host)); err != nil {
			return fail("auth", "as "+cfg.Username, err)
		}
	}
	if err := c.Mail(cfg.From); err != nil {
		return fail("mail", "from "+cfg.From, err)
	}
	for _, to := range cfg.To {
		if err := c.Rcpt(to); err != nil {
			return fail("rcpt", "to "+to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fail("data", "", err)
	}
	if _, err := w.Write(msg); err != nil {
		_ = w.Close()
		return fail("data", "", err)
	}
	if err := w.Close(); err != nil {
		return fail("data", "", err)
	}
	if err := c.Quit(); err != nil {
		return fail("quit", "", err)
	}
	return nil
}

// ctxErr prefers the context's error when the context ended the exchange.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// localName is the name sent in EHLO/HELO.
func localName() string {
	h, err := os.Hostname()
	if err != nil || h == "" || strings.ContainsAny(h, " \r\n") {
		return "localhost"
	}
	return h
}

// buildMessage renders a as an RFC 5322 message: From, To, Subject (MIME
// encoded when not ASCII, CR/LF folded into spaces), Date, Message-ID and
// a quoted-printable UTF-8 text body with the labels appended.
func buildMessage(cfg SMTPConfig, a Alert, now time.Time) ([]byte, error) {
	var b bytes.Buffer
	subject := strings.Join(strings.Fields(a.Subject), " ")
	if subject == "" {
		subject = "AgentOS alert"
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	domain := "agentos.local"
	if at := strings.LastIndexByte(cfg.From, '@'); at >= 0 && at+1 < len(cfg.From) {
		domain = cfg.From[at+1:]
	}
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", (&mail.Address{Address: cfg.From}).String())
	to := make([]string, len(cfg.To))
	for i, t := range cfg.To {
		to[i] = (&mail.Address{Address: t}).String()
	}
	hdr("To", strings.Join(to, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("Message-ID", "<"+hex.EncodeToString(id)+"@"+domain+">")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", `text/plain; charset="utf-8"`)
	hdr("Content-Transfer-Encoding", "quoted-printable")
	hdr("X-Mailer", "agentos")
	b.WriteString("\r\n")
	body := a.Body
	if len(a.Labels) > 0 {
		keys := make([]string, 0, len(a.Labels))
		for k := range a.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var lb strings.Builder
		lb.WriteString("\n\nLabels:\n")
		for _, k := range keys {
			fmt.Fprintf(&lb, "  %s: %s\n", k, a.Labels[k])
		}
		body = strings.TrimRight(body, "\n") + lb.String()
	}
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(strings.ReplaceAll(body, "\r\n", "\n"))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

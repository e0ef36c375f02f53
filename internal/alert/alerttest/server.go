// Package alerttest runs a small SMTP server on 127.0.0.1:0 for tests of
// code that sends alerts: it speaks EHLO/HELO, optional STARTTLS and AUTH
// PLAIN, MAIL, RCPT, DATA, RSET, NOOP and QUIT, and records what it accepts.
package alerttest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Delivery is one message accepted by the test SMTP server.
type Delivery struct {
	From string
	To   []string
	Data string // with dot-stuffing undone, CRLF line ends
	TLS  bool   // delivered after STARTTLS
	Auth string // "user:password" when AUTH PLAIN was used
}

// Server is a tiny SMTP server on 127.0.0.1:0 for tests: EHLO/HELO,
// optional STARTTLS and AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
type Server struct {
	Addr string
	// RejectRcpt makes RCPT to these addresses fail with 550.
	RejectRcpt map[string]bool
	// User and Password, when set, are the only AUTH PLAIN credentials
	// accepted, and AUTH is advertised.
	User, Password string
	// TLS, when set, makes the server advertise STARTTLS.
	TLS *tls.Config

	ln   net.Listener
	mu   sync.Mutex
	msgs []Delivery
	wg   sync.WaitGroup
}

// Start runs a server until the test ends; configure, if not nil, sets
// its options before it accepts connections.
func Start(t testing.TB, configure func(*Server)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &Server{Addr: ln.Addr().String(), ln: ln}
	if configure != nil {
		configure(s)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

// Deliveries returns the messages accepted so far.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.msgs...)
}

func (s *Server) serve(conn net.Conn) {
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	reply := func(lines ...string) bool {
		for _, l := range lines {
			_, _ = w.WriteString(l + "\r\n")
		}
		return w.Flush() == nil
	}
	var cur Delivery
	isTLS := false
	if !reply("220 test.local ESMTP ready") {
		return
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			lines := []string{"250-test.local hello " + arg, "250-8BITMIME"}
			if s.TLS != nil && !isTLS {
				lines = append(lines, "250-STARTTLS")
			}
			if s.User != "" {
				lines = append(lines, "250-AUTH PLAIN")
			}
			lines = append(lines, "250 SIZE 1048576")
			reply(lines...)
		case "HELO":
			reply("250 test.local")
		case "STARTTLS":
			if s.TLS == nil || isTLS {
				reply("502 5.5.1 no STARTTLS here")
				continue
			}
			reply("220 2.0.0 go ahead")
			tc := tls.Server(conn, s.TLS)
			if tc.Handshake() != nil {
				return
			}
			conn, isTLS = tc, true
			r, w = bufio.NewReader(tc), bufio.NewWriter(tc)
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			raw, err := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(raw), "\x00")
			if !strings.EqualFold(mech, "PLAIN") || err != nil || len(parts) != 3 {
				reply("501 5.5.2 bad AUTH")
				continue
			}
			if parts[1] != s.User || parts[2] != s.Password {
				reply("535 5.7.8 authentication credentials invalid")
				continue
			}
			cur.Auth = parts[1] + ":" + parts[2]
			reply("235 2.7.0 authenticated")
		case "MAIL":
			cur.From = addrArg(arg)
			cur.To = nil
			reply("250 2.1.0 ok")
		case "RCPT":
			to := addrArg(arg)
			if s.RejectRcpt[to] {
				reply("550 5.1.1 <" + to + ">: no such user")
				continue
			}
			cur.To = append(cur.To, to)
			reply("250 2.1.5 ok")
		case "DATA":
			reply("354 end with <CRLF>.<CRLF>")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			cur.Data, cur.TLS = b.String(), isTLS
			s.mu.Lock()
			s.msgs = append(s.msgs, cur)
			s.mu.Unlock()
			cur = Delivery{Auth: cur.Auth}
			reply("250 2.0.0 queued")
		case "RSET":
			cur = Delivery{Auth: cur.Auth}
			reply("250 2.0.0 ok")
		case "NOOP":
			reply("250 2.0.0 ok")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("500 5.5.2 unknown command")
		}
	}
}

// addrArg extracts the address from "FROM:<a@b>" or "TO:<a@b> PARAMS".
func addrArg(arg string) string {
	_, rest, _ := strings.Cut(arg, ":")
	rest = strings.TrimSpace(rest)
	if i := strings.IndexByte(rest, '>'); strings.HasPrefix(rest, "<") && i > 0 {
		return rest[1:i]
	}
	return rest
}

// SelfSignedTLS returns a server config for 127.0.0.1 and a client config
// trusting it.
func SelfSignedTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test smtp"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return server, client
}

// Message is a delivered message decoded for assertions.
type Message struct {
	From, To, Subject string
	Body              string // quoted-printable decoded, LF line ends
	Header            mail.Header
}

// Parse decodes the message of d: headers, MIME-encoded subject and the
// quoted-printable body.
func (d Delivery) Parse() (Message, error) {
	m, err := mail.ReadMessage(strings.NewReader(d.Data))
	if err != nil {
		return Message{}, err
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		return Message{}, err
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		return Message{}, err
	}
	return Message{From: m.Header.Get("From"), To: m.Header.Get("To"), Subject: subject,
		Body: strings.ReplaceAll(string(body), "\r\n", "\n"), Header: m.Header}, nil
}

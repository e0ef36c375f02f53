package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// fedNode is one federated node under test.
type fedNode struct {
	*testnode.Node
	stackID string
}

// fedPeerURL is the node's mTLS peer API.
func (n *fedNode) fedPeerURL() string { return "https://" + n.Addrs["federation-peer"] }

// fedCLI runs the agentos CLI with the node's environment and fails on error.
func fedCLI(t *testing.T, n *fedNode, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.Run(ctx, args...)
	require.NoError(t, err, "agentos %s:\n%s", strings.Join(args, " "), out)
	return out
}

// fedDo sends a JSON request and returns the status, headers and body.
func fedDo(t *testing.T, client *http.Client, method, url string, hdr map[string]string, body any) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Minute}
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, out
}

// fedErrCode returns the error envelope's code.
func fedErrCode(t *testing.T, body []byte) string {
	t.Helper()
	var env struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &env), string(body))
	return env.Error.Code
}

// fedEvents parses an SSE body into events, checking framing.
func fedEvents(t *testing.T, body []byte) []store.Event {
	t.Helper()
	frames, err := federation.ParseSSE(body)
	require.NoError(t, err)
	var evs []store.Event
	for _, f := range frames {
		if f.Comment {
			continue
		}
		var d struct {
			Event store.Event `json:"event"`
		}
		require.NoError(t, json.Unmarshal([]byte(f.Data), &d), f.Data)
		require.Equal(t, f.Event, d.Event.Type)
		evs = append(evs, d.Event)
	}
	return evs
}

// fedImpersonator acts as a node's federation service: its certificate
// for mTLS and its identity key for tokens (read from the node's files).
type fedImpersonator struct {
	tls    *pki.NodeTLS
	signer *identity.Signer
}

func fedLoadIdentity(t *testing.T, n *fedNode) fedImpersonator {
	t.Helper()
	f := federation.FilesIn(n.Home)
	nt, err := pki.LoadNodeTLS(f.CA, f.Cert, f.Key)
	require.NoError(t, err)
	key, err := identity.LoadOrCreateKey(f.SigningKey, false)
	require.NoError(t, err)
	return fedImpersonator{tls: nt, signer: identity.NewSigner(n.stackID, key)}
}

// client returns an HTTPS client with (or without) the node certificate.
func (f fedImpersonator) client(withCert bool) *http.Client {
	cfg := f.tls.ClientConfig(nil, "")
	if !withCert {
		cfg = &tls.Config{RootCAs: f.tls.CAs, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func (f fedImpersonator) token(t *testing.T, aud, tenant string) string {
	t.Helper()
	tok, err := f.signer.Sign(identity.Claims{Audience: aud, TenantID: tenant, Subject: "usr_e2e",
		PrincipalType: "user", Scopes: []string{"runs:forward", "runs:create", "runs:read", "events:read"}}, time.Minute)
	require.NoError(t, err)
	return tok
}

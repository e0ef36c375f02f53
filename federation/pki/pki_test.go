package pki

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

type bundle struct {
	caDir   string
	a, b    *NodeTLS
	foreign *NodeTLS
}

func setup(t *testing.T) bundle {
	t.Helper()
	root := t.TempDir()
	caDir := filepath.Join(root, "ca")
	ca, created, err := InitCA(caDir)
	require.NoError(t, err)
	require.True(t, created)
	require.True(t, ca.IsCA)
	issue := func(ca, stack string) *NodeTLS {
		out := filepath.Join(root, stack)
		c, err := IssueNodeCert(ca, stack, nil, out)
		require.NoError(t, err)
		require.Equal(t, stack, StackIDOf(c))
		n, err := LoadNodeTLS(filepath.Join(out, CAFile), filepath.Join(out, NodeFile), filepath.Join(out, NodeKeyFile))
		require.NoError(t, err)
		require.Equal(t, stack, n.StackID)
		return n
	}
	otherCA := filepath.Join(root, "other-ca")
	_, _, err = InitCA(otherCA)
	require.NoError(t, err)
	return bundle{caDir: caDir, a: issue(caDir, "stk_a"), b: issue(caDir, "stk_b"), foreign: issue(otherCA, "stk_evil")}
}

func serve(t *testing.T, n *NodeTLS) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, StackIDOf(r.TLS.PeerCertificates[0]))
	}))
	srv.TLS = n.ServerConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func get(cfg *tls.Config, url string) (int, string, error) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := serve(t, b.b)

	status, body, err := get(b.a.ClientConfig(nil, ""), srv.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "stk_a", body)

	// pinned to the right certificate
	status, _, err = get(b.a.ClientConfig(nil, Fingerprint(b.b.Leaf)), srv.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	// pinned to another certificate
	_, _, err = get(b.a.ClientConfig(nil, Fingerprint(b.a.Leaf)), srv.URL)
	require.Error(t, err)

	// no client certificate: handshake passes, the HTTP layer refuses
	noCert := &tls.Config{RootCAs: b.a.CAs, MinVersion: tls.VersionTLS12}
	status, _, err = get(noCert, srv.URL)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status)

	// a certificate from another CA: the handshake fails
	_, _, err = get(b.foreign.ClientConfig(b.a.CAs, ""), srv.URL)
	require.Error(t, err)
}

func TestInitCAIsIdempotent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c1, created, err := InitCA(dir)
	require.NoError(t, err)
	require.True(t, created)
	c2, created, err := InitCA(dir)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, c1.Raw, c2.Raw)
}

func TestIssueRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := IssueNodeCert(dir, "stk_a", nil, dir)
	require.Error(t, err, "no CA yet")
	_, _, err = InitCA(dir)
	require.NoError(t, err)
	_, err = IssueNodeCert(dir, "bad id/..", nil, dir)
	require.Error(t, err)
	c, err := IssueNodeCert(dir, "stk_a", []string{"node-a.example", "10.0.0.1"}, filepath.Join(dir, "a"))
	require.NoError(t, err)
	require.Equal(t, []string{"node-a.example"}, c.DNSNames)
	require.Len(t, c.IPAddresses, 1)
}

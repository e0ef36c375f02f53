package modelpolicy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

// testAuth is an Authenticate middleware reading a fixed identity from
// X-Test-* headers: tenant, principal, roles and scopes (comma separated).
func testAuth(next http.Handler) http.Handler {
	return httpx.H(func(w http.ResponseWriter, r *http.Request) error {
		t := r.Header.Get("X-Test-Tenant")
		if t == "" {
			return errs.E(errs.Unauthorized, "no test credential")
		}
		ac := auth.Context{TenantID: t, Principal: auth.Principal{PrincipalID: cmpStr(r.Header.Get("X-Test-Principal"), "usr_test"), PrincipalType: "user"}}
		if v := r.Header.Get("X-Test-Roles"); v != "" {
			ac.Roles = strings.Split(v, ",")
		} else {
			ac.Roles = []string{auth.RoleTenantUser}
		}
		if v := r.Header.Get("X-Test-Scopes"); v != "" {
			ac.Scopes = strings.Split(v, ",")
		} else {
			ac.Scopes = auth.HeaderUserScopes
		}
		next.ServeHTTP(w, r.WithContext(auth.With(r.Context(), ac)))
		return nil
	})
}

type bundle struct {
	t   *testing.T
	db  *sqlite.DB
	srv *Server
	url string
}

// flush writes the server's queued ledger and audit records and settles
// its budget allocations, so the store can be checked.
func (b *bundle) flush() {
	b.t.Helper()
	require.NoError(b.t, b.srv.Flush(context.Background()))
}

type setupOpts struct {
	cat    *Catalogue
	mutate func(*Config)
}

func openDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "agentos.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func setup(t *testing.T, o setupOpts) *bundle {
	t.Helper()
	db := openDB(t)
	cfg := Config{Store: db, Authenticate: testAuth, Catalogue: o.cat, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), NodeID: "node_test", Version: "1.2.3"}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	s, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Stop() })
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &bundle{t: t, db: db, srv: s, url: ts.URL}
}

func tenant(id string, mut ...func(*store.Tenant)) store.Tenant {
	t := store.Tenant{TenantID: id, Name: id, Status: store.TenantActive, PlanTier: "standard",
		CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC(),
		Entitlements: store.Entitlements{ModelTiersAllowed: []string{"*"}, ModelBackendsAllowed: []string{"*"}, ToolIDsAllowed: []string{"*"}}}
	for _, m := range mut {
		m(&t)
	}
	return t
}

func (b *bundle) addTenant(t store.Tenant) {
	b.t.Helper()
	require.NoError(b.t, b.db.CreateTenant(context.Background(), t))
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (b *bundle) do(method, path, tenantID string, body any, hdr ...string) reply {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			raw, err := json.Marshal(body)
			require.NoError(b.t, err)
			rd = bytes.NewReader(raw)
		}
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	require.NoError(b.t, err)
	if tenantID != "" {
		req.Header.Set("X-Test-Tenant", tenantID)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	rep := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		require.NoError(b.t, json.Unmarshal(raw, &rep.body), string(raw))
	}
	return rep
}

func errCode(r reply) string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func chatBody(tenantID, modelRef string, msgs []map[string]any, tools []map[string]any) map[string]any {
	in := map[string]any{"messages": msgs}
	if tools != nil {
		in["tools"] = tools
	}
	return map[string]any{"auth": map[string]any{"tenant_id": tenantID, "principal_id": "usr_test"},
		"request":     map[string]any{"request_id": "req_test", "operation": "chat", "model_ref": modelRef, "input": in},
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
}

func user(text string) map[string]any { return map[string]any{"role": "user", "content": text} }

var echoTool = map[string]any{"tool_id": "tool.echo", "name": "tool.echo", "description": "echo",
	"input_schema": map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}}, "required": []string{"text"}}}

func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

package builtin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/tools/toolstest"
)

// fakeResolver maps hostnames to addresses and records lookups.
type fakeResolver struct {
	hosts   map[string][]string
	mu      sync.Mutex
	lookups []string
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	r.lookups = append(r.lookups, host)
	r.mu.Unlock()
	addrs, ok := r.hosts[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		out[i] = netip.MustParseAddr(a)
	}
	return out, nil
}

func (r *fakeResolver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lookups)
}

// fetchServer is a test upstream on 127.0.0.1.
type fetchServer struct {
	*httptest.Server
	port  string
	hits  atomic.Int32
	block chan struct{}
}

func newFetchServer(t *testing.T) *fetchServer {
	t.Helper()
	s := &fetchServer{block: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Secret", "not returned")
		_, _ = io.WriteString(w, "hello world")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"method": r.Method, "body": string(body), "content_type": r.Header.Get("Content-Type"),
			"x_test": r.Header.Get("X-Test"), "user_agent": r.Header.Get("User-Agent"),
		})
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("0123456789", 100))
	})
	mux.HandleFunc("/binary", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte{0xff, 0xfe, 'a', 0x80})
	})
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nothing here", http.StatusNotFound)
	})
	mux.HandleFunc("/r/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		if n == 0 {
			_, _ = io.WriteString(w, "done")
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/r/%d", n-1), http.StatusFound)
	})
	mux.HandleFunc("/to", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("u"), http.StatusFound)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-s.block:
		}
	})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		mux.ServeHTTP(w, r)
	}))
	srv.Start()
	s.Server = srv
	_, s.port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	t.Cleanup(func() {
		close(s.block)
		srv.Close()
	})
	return s
}

func allow(t *testing.T, s string) []builtin.AllowRule {
	t.Helper()
	rules, err := builtin.ParseAllow(s)
	require.NoError(t, err)
	return rules
}

func fetch(t *testing.T, cfg builtin.HTTPFetchConfig, input any) (map[string]any, error) {
	t.Helper()
	in, err := json.Marshal(input)
	require.NoError(t, err)
	out, err := builtin.HTTPFetch(cfg).Invoke(context.Background(), toolstest.Call("", in))
	if err != nil {
		var e *errs.Error
		require.ErrorAs(t, err, &e, "every error is an *errs.Error")
		return nil, err
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal(out, &m))
	return m, nil
}

func requireForbidden(t *testing.T, err error, address string) {
	t.Helper()
	require.ErrorIs(t, err, errs.ErrForbidden, "err: %v", err)
	require.Contains(t, errs.As(err).Message, address)
}

func TestHTTPFetchConformance(t *testing.T) {
	t.Parallel()
	srv := newFetchServer(t)
	newTool := func(*testing.T) tools.Tool {
		return builtin.HTTPFetch(builtin.HTTPFetchConfig{Allow: allow(t, "127.0.0.1")})
	}
	toolstest.Run(t, newTool,
		toolstest.Case{Name: "get", Input: json.RawMessage(`{"url":"` + srv.URL + `/hello"}`), Check: func(t *testing.T, out json.RawMessage) {
			require.Contains(t, string(out), `"body":"hello world"`)
		}},
		toolstest.Case{Name: "hang", Input: json.RawMessage(`{"url":"` + srv.URL + `/hang"}`), Blocks: true},
		toolstest.Case{Name: "ftp", Input: json.RawMessage(`{"url":"ftp://127.0.0.1/x"}`), WantCode: errs.InvalidRequest, WantField: "url"},
		toolstest.Case{Name: "put", Input: json.RawMessage(`{"url":"` + srv.URL + `/hello","method":"PUT"}`), WantCode: errs.InvalidRequest, WantField: "method"},
		toolstest.Case{Name: "metadata", Input: json.RawMessage(`{"url":"http://169.254.169.254/latest/meta-data/"}`), WantCode: errs.Forbidden, WantField: "url"},
	)
}

func TestHTTPFetch(t *testing.T) {
	t.Parallel()
	srv := newFetchServer(t)
	local := builtin.HTTPFetchConfig{Allow: allow(t, "127.0.0.1")}

	t.Run("get", func(t *testing.T) {
		t.Parallel()
		out, err := fetch(t, local, map[string]any{"url": srv.URL + "/hello"})
		require.NoError(t, err)
		require.EqualValues(t, 200, out["status"])
		require.Equal(t, "hello world", out["body"])
		require.Equal(t, false, out["truncated"])
		require.Equal(t, srv.URL+"/hello", out["final_url"])
		headers := out["headers"].(map[string]any)
		require.Equal(t, "text/plain; charset=utf-8", headers["Content-Type"])
		require.NotContains(t, headers, "X-Secret")
	})

	t.Run("post", func(t *testing.T) {
		t.Parallel()
		out, err := fetch(t, local, map[string]any{"url": srv.URL + "/echo", "method": "post",
			"body": `{"q":1}`, "headers": map[string]string{"x-test": "yes"}})
		require.NoError(t, err)
		var got map[string]string
		require.NoError(t, json.Unmarshal([]byte(out["body"].(string)), &got))
		require.Equal(t, map[string]string{"method": "POST", "body": `{"q":1}`, "content_type": "application/json",
			"x_test": "yes", "user_agent": "agentos-http-fetch/1"}, got)
	})

	t.Run("non-2xx is a result", func(t *testing.T) {
		t.Parallel()
		out, err := fetch(t, local, map[string]any{"url": srv.URL + "/missing"})
		require.NoError(t, err)
		require.EqualValues(t, 404, out["status"])
	})

	t.Run("size cap", func(t *testing.T) {
		t.Parallel()
		cfg := local
		cfg.MaxBytes = 25
		out, err := fetch(t, cfg, map[string]any{"url": srv.URL + "/big"})
		require.NoError(t, err)
		require.Equal(t, "0123456789012345678901234", out["body"])
		require.Equal(t, true, out["truncated"])

		_, err = fetch(t, cfg, map[string]any{"url": srv.URL + "/echo", "method": "POST", "body": strings.Repeat("x", 26)})
		require.ErrorIs(t, err, errs.ErrInvalid)
		require.Equal(t, "body", errs.As(err).Details["field"])
	})

	t.Run("binary body stays valid JSON", func(t *testing.T) {
		t.Parallel()
		out, err := fetch(t, local, map[string]any{"url": srv.URL + "/binary"})
		require.NoError(t, err)
		require.Equal(t, "\uFFFDa\uFFFD", out["body"])
	})

	t.Run("three redirects are followed", func(t *testing.T) {
		t.Parallel()
		out, err := fetch(t, local, map[string]any{"url": srv.URL + "/r/3"})
		require.NoError(t, err)
		require.Equal(t, "done", out["body"])
		require.Equal(t, srv.URL+"/r/0", out["final_url"])
	})

	t.Run("four redirects are an error", func(t *testing.T) {
		t.Parallel()
		_, err := fetch(t, local, map[string]any{"url": srv.URL + "/r/4"})
		require.ErrorIs(t, err, errs.ErrInvalid)
		require.Contains(t, err.Error(), "3 redirects")
	})

	t.Run("no redirects when configured", func(t *testing.T) {
		t.Parallel()
		cfg := local
		cfg.MaxRedirects = -1
		_, err := fetch(t, cfg, map[string]any{"url": srv.URL + "/r/1"})
		require.ErrorIs(t, err, errs.ErrInvalid)
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		cfg := local
		cfg.Timeout = 50 * time.Millisecond
		_, err := fetch(t, cfg, map[string]any{"url": srv.URL + "/hang"})
		require.Equal(t, errs.Timeout, errs.CodeOf(err), "err: %v", err)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})

	t.Run("timeout through tools.Invoke", func(t *testing.T) {
		t.Parallel()
		reg := tools.NewRegistry()
		require.NoError(t, reg.Register(builtin.HTTPFetch(local)))
		in, _ := json.Marshal(map[string]any{"url": srv.URL + "/hang"})
		_, err := tools.Invoke(context.Background(), reg, toolstest.Call("", in), builtin.HTTPFetchID, 50*time.Millisecond)
		require.Equal(t, errs.Timeout, errs.CodeOf(err), "err: %v", err)
	})

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		_, err = fetch(t, local, map[string]any{"url": "http://" + addr + "/"})
		require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "err: %v", err)
	})

	t.Run("unknown host", func(t *testing.T) {
		t.Parallel()
		cfg := local
		cfg.Resolver = &fakeResolver{}
		_, err := fetch(t, cfg, map[string]any{"url": "http://nowhere.test/"})
		require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "err: %v", err)
		require.Contains(t, errs.As(err).Message, "nowhere.test")
	})

	t.Run("invalid input", func(t *testing.T) {
		t.Parallel()
		bad := map[string]map[string]any{
			"url":              {"url": "file:///etc/passwd"},
			"method":           {"url": srv.URL, "method": "DELETE"},
			"body":             {"url": srv.URL, "body": "x"},
			"headers.Bad Name": {"url": srv.URL, "headers": map[string]string{"Bad Name": "x"}},
			"headers.host":     {"url": srv.URL, "headers": map[string]string{"host": "evil"}},
			"headers.X-Inject": {"url": srv.URL, "headers": map[string]string{"X-Inject": "a\r\nB: c"}},
			"headers.X-Number": {"url": srv.URL, "headers": map[string]any{"X-Number": 1}},
		}
		for field, in := range bad {
			_, err := fetch(t, local, in)
			require.ErrorIs(t, err, errs.ErrInvalid, field)
			require.Equal(t, field, errs.As(err).Details["field"], "err: %v", err)
		}
		_, err := fetch(t, local, map[string]any{"url": "http:///nohost"})
		require.ErrorIs(t, err, errs.ErrInvalid)
	})
}

func TestHTTPFetchSSRFGuard(t *testing.T) {
	t.Parallel()
	srv := newFetchServer(t)
	res := &fakeResolver{hosts: map[string][]string{
		"ten.test":    {"10.0.0.1"},
		"meta.test":   {"169.254.169.254"},
		"mapped.test": {"::ffff:127.0.0.1"},
		"mixed.test":  {"93.184.216.34", "127.0.0.1"},
		"cgnat.test":  {"100.64.0.1"},
		"ula.test":    {"fd12::1"},
		"loop.test":   {"127.0.0.1"},
		"a.svc.test":  {"127.0.0.1"},
		"svc.test":    {"127.0.0.1"},
		"both.test":   {"127.0.0.1", "10.0.0.1"},
	}}

	t.Run("loopback refused without the allowlist", func(t *testing.T) {
		t.Parallel()
		// Its own server: the other subtests hit the shared one concurrently.
		own := newFetchServer(t)
		_, err := fetch(t, builtin.HTTPFetchConfig{}, map[string]any{"url": own.URL + "/hello"})
		requireForbidden(t, err, "127.0.0.1")
		require.Equal(t, "loopback", errs.As(err).Details["reason"])
		require.Zero(t, own.hits.Load(), "nothing reached the server")
	})

	t.Run("names resolving to refused addresses", func(t *testing.T) {
		t.Parallel()
		cfg := builtin.HTTPFetchConfig{Resolver: res}
		for host, addr := range map[string]string{
			"ten.test": "10.0.0.1", "meta.test": "169.254.169.254", "mapped.test": "127.0.0.1",
			"mixed.test": "127.0.0.1", "cgnat.test": "100.64.0.1", "ula.test": "fd12::1", "loop.test": "127.0.0.1",
		} {
			_, err := fetch(t, cfg, map[string]any{"url": "http://" + host + ":" + srv.port + "/hello"})
			requireForbidden(t, err, addr)
			require.Contains(t, errs.As(err).Message, host)
		}
	})

	t.Run("address literals", func(t *testing.T) {
		t.Parallel()
		for _, u := range []string{
			"http://127.0.0.1:" + srv.port + "/hello",
			"http://[::1]:" + srv.port + "/",
			"http://[::ffff:127.0.0.1]:" + srv.port + "/",
			"http://[::ffff:7f00:1]/",
			"http://0.0.0.0:" + srv.port + "/",
			"http://169.254.169.254/latest/meta-data/",
			"http://[fe80::1%25lo]/",
			"http://192.168.1.1/",
			"http://172.16.5.4/",
			"http://224.0.0.1/",
			"http://[64:ff9b::a9fe:a9fe]/",
			"http://[2002:7f00:1::]/",
		} {
			_, err := fetch(t, builtin.HTTPFetchConfig{}, map[string]any{"url": u})
			require.ErrorIs(t, err, errs.ErrForbidden, u)
		}
	})

	t.Run("internal names are refused before any lookup", func(t *testing.T) {
		t.Parallel()
		r := &fakeResolver{hosts: map[string][]string{}}
		for _, host := range []string{"localhost", "LOCALHOST.", "foo.localhost", "metadata.google.internal", "metadata", "metadata.goog"} {
			_, err := fetch(t, builtin.HTTPFetchConfig{Resolver: r}, map[string]any{"url": "http://" + host + "/"})
			require.ErrorIs(t, err, errs.ErrForbidden, host)
		}
		require.Zero(t, r.count())
	})

	t.Run("redirects are checked again", func(t *testing.T) {
		t.Parallel()
		// Only the name loop.test is allowed: the redirect to the bare
		// address and the one to ten.test are refused.
		cfg := builtin.HTTPFetchConfig{Resolver: res, Allow: allow(t, "loop.test")}
		base := "http://loop.test:" + srv.port
		out, err := fetch(t, cfg, map[string]any{"url": base + "/hello"})
		require.NoError(t, err)
		require.Equal(t, "hello world", out["body"])

		_, err = fetch(t, cfg, map[string]any{"url": base + "/to?u=http://127.0.0.1:" + srv.port + "/hello"})
		requireForbidden(t, err, "127.0.0.1")
		_, err = fetch(t, cfg, map[string]any{"url": base + "/to?u=http://ten.test:" + srv.port + "/hello"})
		requireForbidden(t, err, "10.0.0.1")
		_, err = fetch(t, cfg, map[string]any{"url": base + "/to?u=http://169.254.169.254/latest/meta-data/"})
		requireForbidden(t, err, "169.254.169.254")
	})

	t.Run("allowlist forms", func(t *testing.T) {
		t.Parallel()
		ok := map[string]string{
			"cidr":     "http://loop.test:" + srv.port + "/hello",
			"host":     "http://svc.test:" + srv.port + "/hello",
			"wildcard": "http://a.svc.test:" + srv.port + "/hello",
		}
		rules := map[string]string{"cidr": "10.0.0.0/8, 127.0.0.0/8", "host": "svc.test", "wildcard": "*.svc.test"}
		for name, u := range ok {
			out, err := fetch(t, builtin.HTTPFetchConfig{Resolver: res, Allow: allow(t, rules[name])}, map[string]any{"url": u})
			require.NoError(t, err, name)
			require.Equal(t, "hello world", out["body"], name)
		}
		// The wildcard does not cover the bare domain.
		_, err := fetch(t, builtin.HTTPFetchConfig{Resolver: res, Allow: allow(t, "*.svc.test")},
			map[string]any{"url": "http://svc.test:" + srv.port + "/hello"})
		requireForbidden(t, err, "127.0.0.1")
		// An allowed range does not open the others.
		_, err = fetch(t, builtin.HTTPFetchConfig{Resolver: res, Allow: allow(t, "127.0.0.1")},
			map[string]any{"url": "http://both.test:" + srv.port + "/hello"})
		requireForbidden(t, err, "10.0.0.1")
	})
}

func TestHTTPFetchContinuesTheTrace(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("traceparent")
	}))
	defer srv.Close()
	tr := httpx.ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx := httpx.WithTrace(context.Background(), tr)
	in, err := json.Marshal(map[string]any{"url": srv.URL})
	require.NoError(t, err)
	_, err = builtin.HTTPFetch(builtin.HTTPFetchConfig{Allow: allow(t, "127.0.0.1")}).Invoke(ctx, toolstest.Call("", in))
	require.NoError(t, err)
	tp := <-got
	require.True(t, strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-"), tp)
	require.NotContains(t, tp, tr.SpanID, "the fetch is a child span")
}

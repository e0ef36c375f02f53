package console_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/console"
)

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	resp := rec.Result()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestHandlerServesShellAndAssets(t *testing.T) {
	t.Parallel()
	h := console.Handler(console.Config{Mode: "demo", DefaultTenant: "tnt_demo", TraceURL: `http://x/trace/{trace_id}"><script>`})
	for _, p := range []string{"/console", "/console/", "/console/runs", "/console/runs/run_1", "/console/anything/deeper"} {
		resp, body := get(t, h, "GET", p)
		require.Equal(t, 200, resp.StatusCode, p)
		require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"), p)
		require.Equal(t, console.ContentSecurityPolicy, resp.Header.Get("Content-Security-Policy"), p)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
		require.Contains(t, body, `<meta name="agentos-mode" content="demo">`)
		require.Contains(t, body, `<script type="module" src="/console/assets/js/app.js"></script>`)
		// Settings are escaped into the attribute, never markup.
		require.NotContains(t, body, `"><script>`)
	}
	resp, body := get(t, h, "GET", "/console/assets/app.css")
	require.Equal(t, 200, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css"), resp.Header.Get("Content-Type"))
	require.Contains(t, body, ":root")
	require.Equal(t, console.ContentSecurityPolicy, resp.Header.Get("Content-Security-Policy"))
	resp, _ = get(t, h, "GET", "/console/assets/js/app.js")
	require.Equal(t, 200, resp.StatusCode)
	require.Regexp(t, `^(text|application)/javascript`, resp.Header.Get("Content-Type"))
	_, body = get(t, h, "GET", "/console/assets/../console.go")
	require.NotContains(t, body, "package console", "only assets/ is served; the rest is the shell")
	for _, p := range []string{"/console/assets/nope.js", "/console/assets/index.html", "/console/assets/js"} {
		resp, _ = get(t, h, "GET", p)
		require.Equal(t, 404, resp.StatusCode, p)
	}
	resp, _ = get(t, h, "POST", "/console/runs")
	require.Equal(t, 405, resp.StatusCode)
	require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
}

func TestCSPIsStrict(t *testing.T) {
	t.Parallel()
	csp := console.ContentSecurityPolicy
	require.Contains(t, csp, "default-src 'none'")
	require.Contains(t, csp, "script-src 'self';")
	require.NotContains(t, csp, "unsafe-inline")
	require.NotContains(t, csp, "unsafe-eval")
}

// TestAssetsRenderNoMarkupFromData keeps the rule that makes the console
// safe to show API data in: no HTML parsing of strings (innerHTML and
// friends), no eval, no inline script or style attribute in the shell.
func TestAssetsRenderNoMarkupFromData(t *testing.T) {
	t.Parallel()
	forbidden := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setTimeout\(['"]`)
	root := filepath.Join("assets")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		if strings.HasSuffix(path, ".js") {
			require.Nil(t, forbidden.FindIndex(b), "%s: %q", path, forbidden.Find(b))
		}
		if strings.HasSuffix(path, ".html") {
			require.NotRegexp(t, `<script(?:\s[^>]*)?>\s*[^<\s]`, string(b), "%s: inline script", path)
			require.NotRegexp(t, `\son[a-z]+=|\sstyle=`, string(b), "%s: inline handler or style", path)
		}
		return nil
	})
	require.NoError(t, err)
}

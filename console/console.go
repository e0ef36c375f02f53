// Package console is the AgentOS web console: a small single-page app
// (plain HTML, vanilla JS modules, CSS; no build step) whose assets are
// embedded in the binary and served at /console by the gateway and by the
// orchestrator. Every /console/* path that is not an asset answers the
// app shell, so each page has a real URL the browser can reload.
//
// The console calls only the public API with the visitor's credentials (an
// API token kept in sessionStorage; in demo mode the demo tenant header,
// as the README's curl examples do): it adds no privilege of its own.
// Responses carry a strict Content-Security-Policy: scripts only from
// /console/assets, no inline script or style, no other origin.
package console

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// Prefix is the URL path the console is served under.
const Prefix = "/console"

// ContentSecurityPolicy is sent with every console response. connect-src
// 'self' keeps the API calls on the origin that served the console;
// a trace-view link is a navigation, which CSP does not restrict.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Config is what the shell tells the app about the node.
type Config struct {
	// Mode is the node's mode (demo, dev, prod). In demo mode the console
	// opens on DefaultTenant without sign-in.
	Mode string
	// DefaultTenant is the demo tenant (AGENTOS_DEFAULT_TENANT).
	DefaultTenant string
	// TraceURL, if set, links a run's trace id to a trace view; "{trace_id}"
	// in it is replaced by the id (AGENTOS_CONSOLE_TRACE_URL).
	TraceURL string
}

// Handler serves the console under Prefix.
func Handler(cfg Config) http.Handler {
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	shell := renderShell(cfg)
	files := http.StripPrefix(Prefix+"/assets/", http.FileServer(http.FS(static)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean(r.URL.Path)
		if strings.HasPrefix(p, Prefix+"/assets/") {
			if name := strings.TrimPrefix(p, Prefix+"/assets/"); name == "index.html" || !isAsset(static, name) {
				http.NotFound(w, r)
				return
			}
			h.Set("Cache-Control", "no-cache")
			files.ServeHTTP(w, r)
			return
		}
		if p != Prefix && !strings.HasPrefix(p, Prefix+"/") {
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(shell)
	})
}

// Register mounts the console on mux at /console and /console/.
func Register(mux *http.ServeMux, cfg Config) {
	h := Handler(cfg)
	mux.Handle("GET "+Prefix, h)
	mux.Handle("GET "+Prefix+"/", h)
}

func isAsset(static fs.FS, name string) bool {
	st, err := fs.Stat(static, name)
	return err == nil && !st.IsDir()
}

var shellTemplate = template.Must(template.ParseFS(assets, "assets/index.html"))

// renderShell fills the shell's meta tags once; html/template escapes them.
func renderShell(cfg Config) []byte {
	var b bytes.Buffer
	if err := shellTemplate.Execute(&b, cfg); err != nil {
		panic(err) // fixed template and plain strings: cannot fail
	}
	return b.Bytes()
}

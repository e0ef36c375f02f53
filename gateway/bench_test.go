package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkProxy measures what the gateway adds to a small JSON request
// over loopback: "direct" calls the upstream, "gateway" the same upstream
// through the gateway (keep-alive on both legs).
func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"run":{"run_id":"run_1","status":"succeeded"}}`)
	}))
	defer up.Close()
	g, err := New(Config{Upstreams: Upstreams{Orchestrator: []string{up.URL}, ModelPolicy: []string{up.URL}},
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	g.Start(b.Context())
	defer g.Stop()
	gw := httptest.NewServer(g.Handler())
	defer gw.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for name, base := range map[string]string{"direct": up.URL, "gateway": gw.URL} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				resp, err := client.Get(base + "/v1/runs/run_1")
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}

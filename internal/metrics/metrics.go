// Package metrics builds the Prometheus registry of a service and the
// metrics shared by all services (HTTP requests, auth failures). Service
// specific metrics are declared by the service on the same registry.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nexixai/agentos/internal/httpx"
)

// NewRegistry returns a registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves the registry in the Prometheus text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// HTTP counts requests per service, route and status code.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewHTTP registers the HTTP metrics of service on reg.
func NewHTTP(reg prometheus.Registerer, service string) *HTTP {
	h := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_http_requests_total", Help: "HTTP requests by route and status code.",
			ConstLabels: prometheus.Labels{"service": service},
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentos_http_request_duration_seconds", Help: "HTTP request latency by route.",
			ConstLabels: prometheus.Labels{"service": service}, Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	reg.MustRegister(h.requests, h.duration)
	return h
}

// Observe records one request; use it as httpx.AccessLog's observe hook.
func (h *HTTP) Observe(r *http.Request, status int, d time.Duration) {
	route := httpx.Route(r.Context())
	if route == "" {
		route = "unmatched"
	}
	h.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	h.duration.WithLabelValues(route).Observe(d.Seconds())
}

// NewAuthFailures registers the rejected-credentials counter of service on
// reg and returns the hook for auth.Config.OnFailure.
func NewAuthFailures(reg prometheus.Registerer, service string) func(code string) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentos_auth_failures_total", Help: "Rejected credentials by error code.",
		ConstLabels: prometheus.Labels{"service": service},
	}, []string{"code"})
	reg.MustRegister(c)
	return func(code string) { c.WithLabelValues(code).Inc() }
}

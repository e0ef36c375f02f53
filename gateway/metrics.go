package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// gatewayMetrics are the gateway's own series (docs/operations.md
// "Gateway"; deploy/observability shows and alerts on them). Labels are
// bounded by the upstreams file: pool and upstream names, status codes.
type gatewayMetrics struct {
	requests *prometheus.CounterVec
	healthy  *prometheus.GaugeVec
}

func newGatewayMetrics(reg prometheus.Registerer) *gatewayMetrics {
	m := &gatewayMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_gateway_requests_total",
			Help: "Requests proxied by the gateway, by pool and HTTP status (\"aborted\": cut mid-response).",
		}, []string{"pool", "code"}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentos_gateway_upstream_healthy",
			Help: "1 while an upstream replica is in the gateway's rotation, else 0.",
		}, []string{"pool", "upstream"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.healthy)
	}
	return m
}

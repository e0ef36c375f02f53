package modelpolicy

import (
	"github.com/prometheus/client_golang/prometheus"
)

type serverMetrics struct {
	requests    *prometheus.CounterVec
	tokens      *prometheus.CounterVec
	cost        *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	blocks      *prometheus.CounterVec
	redactions  *prometheus.CounterVec
	routes      *prometheus.CounterVec
	backendUp   *prometheus.GaugeVec
	auditErrors prometheus.Counter
}

func newServerMetrics(reg prometheus.Registerer) *serverMetrics {
	m := &serverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentos_model_requests_total",
			Help: "Model calls by operation, backend, model and outcome code."}, []string{"operation", "backend", "model", "code"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentos_model_tokens_total",
			Help: "Tokens by backend, model and direction (input, output)."}, []string{"backend", "model", "direction"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentos_model_cost_usd_total",
			Help: "Model cost in USD by backend and model."}, []string{"backend", "model"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "agentos_model_latency_seconds",
			Help: "Backend call latency.", Buckets: prometheus.DefBuckets}, []string{"backend"}),
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentos_policy_blocks_total",
			Help: "Calls blocked by policy, by stage (input, output, tools, models)."}, []string{"stage"}),
		redactions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentos_policy_redactions_total",
			Help: "Redacted items by type."}, []string{"type"}),
		routes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentos_model_routes_total",
			Help: "Served calls by backend and whether a fallback was used."}, []string{"backend", "fallback"}),
		backendUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agentos_model_backend_up",
			Help: "1 when the backend's last health check passed."}, []string{"backend"}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "agentos_model_audit_errors_total",
			Help: "Audit records that could not be written."}),
	}
	reg.MustRegister(m.requests, m.tokens, m.cost, m.latency, m.blocks, m.redactions, m.routes, m.backendUp, m.auditErrors)
	return m
}

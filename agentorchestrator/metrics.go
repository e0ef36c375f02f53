package agentorchestrator

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// orchMetrics are the run metrics of DESIGN §8.
type orchMetrics struct {
	runsCreated  *prometheus.CounterVec   // by tenant
	runsTotal    *prometheus.CounterVec   // by outcome, tenant
	runDuration  *prometheus.HistogramVec // by outcome
	stepDuration *prometheus.HistogramVec // by kind
	toolCalls    *prometheus.CounterVec   // by tool, status
	toolDuration *prometheus.HistogramVec // by tool
	modelCalls   *prometheus.CounterVec   // by status
	queueDepth   prometheus.Gauge
	activeRuns   prometheus.Gauge
	resumed      prometheus.Counter
	// Event streams open, and refused by code (rate_limited, overloaded).
	streamsOpen    prometheus.Gauge
	streamsRefused *prometheus.CounterVec
	retries        *prometheus.CounterVec // by kind (model, tool)
	busErrors      *prometheus.CounterVec // by op (publish, signal, subscribe)
	circuitOpen    prometheus.Gauge
	tenants        tenantLabels
}

func newOrchMetrics(reg prometheus.Registerer) *orchMetrics {
	m := &orchMetrics{
		runsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_runs_created_total", Help: "Runs admitted (idempotent replays excluded), by tenant (top tenants, the rest \"other\")."}, []string{"tenant"}),
		runsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_runs_total", Help: "Runs finished, by outcome (completed, failed, canceled) and tenant (top tenants, the rest \"other\")."}, []string{"outcome", "tenant"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentos_run_duration_seconds", Help: "Run latency from creation to terminal state.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12)}, []string{"outcome"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentos_step_duration_seconds", Help: "Step latency by kind (model, tool).",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 12)}, []string{"kind"}),
		toolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_tool_calls_total", Help: "Tool calls by tool and status (ok, error, timeout)."}, []string{"tool_id", "status"}),
		toolDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentos_tool_duration_seconds", Help: "Tool call latency.",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 12)}, []string{"tool_id"}),
		modelCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_model_calls_total", Help: "Model calls made by runs, by status."}, []string{"status"}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentos_queue_depth", Help: "Runs waiting in the queue (not leased)."}),
		activeRuns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentos_active_runs", Help: "Runs executing in this process."}),
		resumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentos_runs_resumed_total", Help: "Runs resumed after their executor was lost."}),
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentos_event_streams_open", Help: "Run event streams (SSE) open in this process."}),
		streamsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_event_streams_refused_total", Help: "Run event streams refused at a cap, by code (rate_limited: the tenant's; overloaded: the node's)."}, []string{"code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_dependency_retries_total", Help: "Retries of a run's model or tool call after a retryable failure, by kind (model, tool)."}, []string{"kind"}),
		busErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_bus_errors_total", Help: "Failed bus operations, by op (publish: committed events, which streams then read from the store; signal: a cancel or wake-up; subscribe; publish_dropped, signal_dropped: given up unsent because the bus was not keeping up)."}, []string{"op"}),
		circuitOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentos_model_policy_circuit_open", Help: "1 while the model-policy circuit breaker is open (no runs are leased), else 0."}),
	}
	reg.MustRegister(m.retries, m.circuitOpen, m.busErrors)
	reg.MustRegister(m.runsCreated, m.runsTotal, m.runDuration, m.stepDuration, m.toolCalls,
		m.toolDuration, m.modelCalls, m.queueDepth, m.activeRuns, m.resumed, m.streamsOpen, m.streamsRefused)
	return m
}

// refreshQueueDepth updates the queue gauge from the queue port.
func (s *Server) refreshQueueDepth(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d, err := s.cfg.Queue.Depth(ctx)
	if err != nil {
		return
	}
	s.metrics.queueDepth.Set(float64(sum(d.Queued)))
}

// maxTenantLabels bounds the tenant label's values: the first tenants seen
// get their own series, the rest share "other" (DESIGN §8).
const maxTenantLabels = 50

// tenantLabels hands out bounded tenant label values.
type tenantLabels struct {
	mu   sync.Mutex
	seen map[string]bool
}

// label returns tenantID while fewer than maxTenantLabels tenants have a
// series of their own, else "other".
func (l *tenantLabels) label(tenantID string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[tenantID] {
		return tenantID
	}
	if len(l.seen) >= maxTenantLabels {
		return "other"
	}
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	l.seen[tenantID] = true
	return tenantID
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

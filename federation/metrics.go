package federation

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexixai/agentos/internal/httpx"
)

// metricsSet holds the service's Prometheus metrics.
type metricsSet struct {
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	forwards       *prometheus.CounterVec
	streams        prometheus.Gauge
	streamsRefused *prometheus.CounterVec
	ingested       *prometheus.CounterVec
	peerRejections *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metricsSet {
	m := &metricsSet{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_federation_http_requests_total", Help: "HTTP requests by API, route and status class (2xx..5xx, canceled: the caller hung up).",
		}, []string{"api", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentos_federation_http_request_duration_seconds", Help: "HTTP request latency.",
			Buckets: prometheus.DefBuckets,
		}, []string{"api", "route"}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_federation_forwards_total", Help: "Run forwards by direction (outbound, inbound) and outcome (error code or ok).",
		}, []string{"direction", "outcome"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentos_federation_event_streams_active", Help: "Event streams being proxied now.",
		}),
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_federation_ingested_events_total", Help: "Ingested events by result (accepted, rejected).",
		}, []string{"result"}),
		peerRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentos_federation_peer_rejections_total", Help: "Peer API calls refused, by reason.",
		}, []string{"reason"}),
	}
	m.streamsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentos_federation_event_streams_refused_total",
		Help: "Event streams refused at a cap, by code (rate_limited: the tenant's; overloaded: the node's)."}, []string{"code"})
	reg.MustRegister(m.streamsRefused)
	reg.MustRegister(m.requests, m.latency, m.forwards, m.streams, m.ingested, m.peerRejections)
	return m
}

// statusClass is the status label: "2xx".."5xx", and "canceled" for 499
// (the caller hung up: httpx.StatusClientClosedRequest), counted apart
// from the 4xx a caller got wrong and never as a 5xx.
func statusClass(status int) string {
	if status == httpx.StatusClientClosedRequest {
		return "canceled"
	}
	return strconv.Itoa(status/100) + "xx"
}

// reasonLabel bounds the label values of peerRejections.
func reasonLabel(r string) string {
	switch r {
	case "unknown_issuer", "bad_algorithm", "bad_signature", "malformed", "wrong_audience", "expired",
		"not_yet_valid", "ttl_too_long", "replayed", "issuer_certificate_mismatch":
		return r
	}
	return "other"
}

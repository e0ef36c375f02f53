package dispatch

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	tasks    *prometheus.CounterVec
	inFlight *prometheus.GaugeVec
	queueLag *prometheus.HistogramVec
	retries  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentos_worker_tasks_total",
			Help: "Placed tool calls sent to worker nodes, by worker and outcome (ok, error, timeout, interrupted, retried; unavailable with worker \"\" when none took it)."},
			[]string{"worker", "outcome"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agentos_worker_tasks_in_flight",
			Help: "Tasks a worker runs now for this orchestrator replica."}, []string{"worker"}),
		queueLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "agentos_worker_queue_lag_seconds",
			Help:    "Time from a task's enqueue to a worker starting it, by worker.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"worker"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "agentos_worker_task_retries_total",
			Help: "Idempotent placed calls sent again because their worker died mid-task."}),
	}
	if reg != nil {
		reg.MustRegister(m.tasks, m.inFlight, m.queueLag, m.retries)
	}
	return m
}

func (m *metrics) outcome(worker, outcome string) { m.tasks.WithLabelValues(worker, outcome).Inc() }

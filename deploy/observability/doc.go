// Package observability holds no Go code: the directory carries the
// Prometheus, Alertmanager and Grafana configuration of an AgentOS node
// (see README.md). Its tests check those files against the metrics the
// services really register, so that a renamed metric or label breaks the
// build instead of a dashboard.
package observability

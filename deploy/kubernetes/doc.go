// Package kubernetes holds the AgentOS Helm chart (agentos/) and its test:
// chart_test.go renders the chart with helm and holds every rendered
// object to its Kubernetes API type and to the chart's invariants (probes,
// resources, PDB, HPA, non-root read-only containers, NetworkPolicies).
package kubernetes

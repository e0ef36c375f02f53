// Package queue defines the run queue port: runs admitted by the store wait
// here until an executor leases them. Leases expire unless renewed, so a run
// whose executor died is leased again and resumed.
//
// Runs enter the queue only through store.CreateRun, in the transaction that
// admits them: a queued run is never missing from the queue, and a queue
// entry never names a run that was not created. So the port has no Enqueue.
//
// Adapters: queue/sqlite and queue/postgres, each on the queue_entries table
// of its store. queue/queuetest is the conformance suite every adapter runs.
package queue

import (
	"context"
	"time"
)

// Priorities (higher is leased first within a tenant).
const (
	PriorityLow    = 0
	PriorityNormal = 1
	PriorityHigh   = 2
)

// LeaseParams asks for up to Max runs.
type LeaseParams struct {
	// Owner identifies the executor (process) holding the lease.
	Owner string
	// Max is the most runs to lease in this call.
	Max int
	// TTL is how long the lease lasts without renewal.
	TTL time.Duration
	// TenantLimit returns a tenant's max_concurrent_runs (0 = unlimited;
	// negative = paused: none of the tenant's entries are leased).
	// A tenant already holding that many unexpired leases gets no more.
	TenantLimit func(tenantID string) int
}

// Lease is a run held by an executor.
type Lease struct {
	TenantID  string
	RunID     string
	Owner     string
	Token     string // changes on every lease; Renew/Ack need the current one
	ExpiresAt time.Time
	Attempt   int // how many times this entry has been leased, 1 the first time
}

// Depth is the queue's state for metrics.
type Depth struct {
	Queued map[string]int // by tenant: waiting, not leased
	Leased map[string]int // by tenant: held under an unexpired lease
}

// Queue is the run queue port.
type Queue interface {
	// Lease takes up to p.Max runs, fairly across tenants: each round gives
	// at most one run to each tenant that has work and is under its limit,
	// tenants served least recently first; within a tenant, higher priority
	// then older first. Entries whose lease expired are leasable again.
	Lease(ctx context.Context, p LeaseParams) ([]Lease, error)
	// Renew extends a lease. errs.ErrConflict if the lease was lost
	// (expired and taken by another owner, or acked).
	Renew(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// Ack removes a finished run's entry. errs.ErrConflict if the lease was lost.
	Ack(ctx context.Context, l Lease) error
	// Depth reports queued and leased counts per tenant.
	Depth(ctx context.Context) (Depth, error)
}

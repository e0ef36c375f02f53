package agentorchestrator

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/queue"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/storecache"
)

// Causes that stop an executor without finishing its run: another
// executor (or this process after a restart) resumes it later.
var (
	errShutdown  = errors.New("orchestrator shutting down")
	errLeaseLost = errors.New("run lease lost")
)

// Wake tells the scheduler there may be new work.
func (s *Server) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wakeAll wakes this scheduler and, through the bus, every replica's: a
// queued run starts on whichever has a free executor first.
func (s *Server) wakeAll(ctx context.Context, tenantID string) {
	s.Wake()
	// Reason names the sender, which skips its own echo: it woke already.
	s.signal(ctx, bus.Signal{Kind: bus.SignalWake, TenantID: tenantID, Reason: s.owner})
}

// signalRetry is how long the signal loop waits before subscribing again
// after the bus refused.
const signalRetry = time.Second

// listenSignals is the signal loop: a cancel stops the run's executor if
// it runs here, a wake-up wakes the scheduler. A subscription dropped as
// lagged is made again, with a wake-up in case one was lost (a lost
// cancel is caught by the executor's store check).
func (s *Server) listenSignals(ctx context.Context) {
	for ctx.Err() == nil {
		sub, err := s.bus.SubscribeSignals(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.metrics.busErrors.WithLabelValues("subscribe").Inc()
				s.log.Warn("subscribe to bus signals", "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(signalRetry):
			}
			continue
		}
		s.handleSignals(ctx, sub)
		sub.Close()
		s.Wake()
	}
}

// handleSignals acts on sub's signals until it closes or ctx ends.
func (s *Server) handleSignals(ctx context.Context, sub bus.Subscription[bus.Signal]) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig, ok := <-sub.C():
			if !ok {
				return
			}
			switch sig.Kind {
			case bus.SignalCancel:
				s.stopRun(sig.RunID)
			case bus.SignalWake:
				if sig.Reason != s.owner {
					s.Wake()
				}
			case bus.SignalInvalidate:
				// The writing replica dropped its own entry already.
				if s.cache != nil && sig.Reason != s.owner {
					s.cache.Drop(storecache.Invalidation{Entity: sig.Entity, TenantID: sig.TenantID, ID: sig.ID})
				}
			}
		}
	}
}

// Start starts the scheduler, the bus signal loop and the purge of
// expired idempotency keys; Stop ends them. Recovery after a crash needs
// no scan: a run's queue entry is written with the run and removed only
// once the run is terminal, so unfinished runs are leased again when
// their leases expire.
// Start on a started server is an error (one scheduler per server); after
// Stop it may be started again.
func (s *Server) Start(ctx context.Context) error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.stop != nil {
		return errors.New("agentorchestrator: already started")
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = cancel
	s.loops.Add(4)
	go func() {
		defer s.loops.Done()
		s.schedule(ctx)
	}()
	go func() {
		defer s.loops.Done()
		s.listenSignals(ctx)
	}()
	go func() {
		defer s.loops.Done()
		s.purgeIdempotency(ctx)
	}()
	go func() {
		defer s.loops.Done()
		s.sweepApprovals(ctx)
	}()
	s.loops.Add(2)
	go func() {
		defer s.loops.Done()
		s.deliverWebhooks(ctx)
	}()
	go func() {
		defer s.loops.Done()
		s.tickSchedules(ctx)
	}()
	if s.artifacts != nil {
		every := s.cfg.Node.ArtifactSweep
		if every <= 0 {
			every = time.Minute
		}
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			s.artifacts.RunSweeper(ctx, every)
		}()
	}
	return nil
}

// Stop stops leasing new runs and stops executors; their runs stay leased
// until the lease expires and are then resumed by whoever leases them. It
// returns once the scheduler, every executor and the purge have returned,
// so the store may be closed after it. Stop without Start does nothing.
func (s *Server) Stop() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.stop == nil {
		return
	}
	s.mu.Lock()
	for _, cancel := range s.running {
		cancel(errShutdown)
	}
	s.mu.Unlock()
	s.stop()
	s.loops.Wait() // the scheduler adds no executor after this
	s.wg.Wait()
	// The executors' last events go out before the bus closes (bounded:
	// a bus that hangs keeps them, the store has them).
	s.pub.wait(publishTimeout)
	_ = s.mcp.Close() // no executor calls a tool any more
	s.stop = nil
}

// idempotencyPurgeInterval is how often expired idempotency keys are
// deleted (they expire after a day; an hour's delay costs nothing).
const idempotencyPurgeInterval = time.Hour

// purgeIdempotency deletes expired idempotency keys now and then every
// idempotencyPurgeInterval until ctx ends.
func (s *Server) purgeIdempotency(ctx context.Context) {
	t := time.NewTicker(idempotencyPurgeInterval)
	defer t.Stop()
	for {
		if _, err := s.cfg.Store.PurgeIdempotency(ctx, s.cfg.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("purge idempotency keys", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// schedule is the scheduler loop: lease as many runs as there are free
// executors (none while the model-policy breaker is open), start an
// executor for each, and wait for a wake-up (an admission, a finished run)
// or the poll interval, until ctx ends.
func (s *Server) schedule(ctx context.Context) {
	var active atomic.Int64
	var lastDepth, lastLease time.Time
	for {
		s.probeModelPolicy(ctx)
		if free := s.cfg.Executors - int(active.Load()); free > 0 && s.breaker.allowLease() {
			lastLease = time.Now()
			leases, err := s.leaseRuns(ctx, free)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("lease runs", "err", err)
			}
			if s.leased != nil {
				s.leased(leases)
			}
			for _, l := range leases {
				active.Add(1)
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer func() {
						if ctx.Err() != nil {
							return // shutting down: the run is resumed after its lease expires
						}
						// A free executor here, and perhaps a tenant below its
						// max_concurrent_runs everywhere.
						s.wakeAll(ctx, l.TenantID)
					}()
					defer active.Add(-1)
					s.runLease(ctx, l)
				}()
			}
		}
		if time.Since(lastDepth) > time.Second {
			s.refreshQueueDepth(ctx)
			lastDepth = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			// Coalesce a burst of admissions into one lease call: each is a
			// write transaction, and the burst's runs fit in one.
			if d := leaseCoalesce - time.Since(lastLease); d > 0 {
				time.Sleep(d)
			}
		case <-time.After(s.cfg.PollInterval):
		}
	}
}

// probeModelPolicy is the breaker's half-open probe: once an open
// breaker's cooldown has passed, one health check of model-policy closes
// it or opens it again (with a longer cooldown). The scheduler's poll
// interval paces the checks.
func (s *Server) probeModelPolicy(ctx context.Context) {
	if !s.breaker.probeDue() {
		return
	}
	if s.cfg.ModelProbe == nil {
		s.breaker.record(nil)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := s.cfg.ModelProbe(pctx)
	if err != nil {
		err = errs.Wrap(errs.DependencyUnavailable, err, "model-policy probe")
	}
	s.breaker.record(err)
}

// cancelCheckInterval is how often an executor looks in the store for a
// cancel made through another process.
const cancelCheckInterval = time.Second

// leaseCoalesce is the least time between two lease calls prompted by
// admissions or finished runs.
const leaseCoalesce = 2 * time.Millisecond

// limitsTTL is how stale the scheduler's copy of tenants'
// max_concurrent_runs may be.
const limitsTTL = time.Second

func (s *Server) leaseRuns(ctx context.Context, max int) ([]queue.Lease, error) {
	if time.Since(s.limitsAt) > limitsTTL {
		tenants, err := s.cfg.Store.ListTenants(ctx)
		if err != nil {
			return nil, err
		}
		s.limits = make(map[string]int, len(tenants))
		for _, t := range tenants {
			s.limits[t.TenantID] = t.Quotas.Runs.MaxConcurrentRuns
			if t.Status != store.TenantActive {
				// A disabled tenant's runs wait queued (paused), and run
				// when it is enabled again.
				s.limits[t.TenantID] = -1
			}
		}
		s.limitsAt = time.Now()
	}
	limits := s.limits
	// A tenant created since the limits were read is not leased from this
	// round (its max_concurrent_runs is not known yet; 0 would mean
	// unlimited): the limits are read again and the next round leases it.
	var unknown atomic.Bool
	leases, err := s.cfg.Queue.Lease(ctx, queue.LeaseParams{
		Owner: s.owner, Max: max, TTL: s.cfg.LeaseTTL,
		TenantLimit: func(tenantID string) int {
			lim, ok := limits[tenantID]
			if !ok {
				unknown.Store(true)
				return -1
			}
			return lim
		},
	})
	if unknown.Load() {
		s.limitsAt = time.Time{}
		s.Wake()
	}
	return leases, err
}

// runLease executes one leased run, renewing the lease meanwhile, and acks
// the queue entry once the run is terminal.
func (s *Server) runLease(parent context.Context, l queue.Lease) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	s.mu.Lock()
	if _, dup := s.running[l.RunID]; dup {
		// This process leased the run again after its lease expired while
		// an executor here still runs it: that executor's next renew fails
		// and it stops; the new lease then expires and the run is resumed.
		s.mu.Unlock()
		return
	}
	s.running[l.RunID] = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, l.RunID)
		s.mu.Unlock()
	}()
	s.metrics.activeRuns.Inc()
	defer s.metrics.activeRuns.Dec()

	var mu sync.Mutex
	current := l
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		t := time.NewTicker(s.cfg.LeaseTTL / 3)
		defer t.Stop()
		// A cancel made through another replica reaches this executor
		// through the store (one made here stops it at once).
		check := time.NewTicker(s.cancelCheck)
		defer check.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-check.C:
				if run, err := s.cfg.Store.GetRun(ctx, l.TenantID, l.RunID); err == nil && run.Status.Terminal() {
					cancel(errRunCanceled)
					return
				}
			case <-t.C:
				mu.Lock()
				nl, err := s.cfg.Queue.Renew(ctx, current, s.cfg.LeaseTTL)
				if err == nil {
					current = nl
				}
				expires := current.ExpiresAt
				mu.Unlock()
				switch {
				case err == nil || ctx.Err() != nil:
				case !errors.Is(err, errs.ErrConflict) && time.Until(expires) > s.cfg.LeaseTTL/10:
					// A store hiccup: the lease is still ours until it expires; try again.
					s.log.Warn("renew lease", "run_id", l.RunID, "err", err)
				default:
					// Lost, or about to lapse unrenewed: another executor may
					// take the run over, so stop before it does.
					s.log.Warn("lease lost", "run_id", l.RunID, "err", err)
					cancel(errLeaseLost)
					return
				}
			}
		}
	}()
	finished := s.execute(ctx, l)
	cancel(nil)
	<-renewDone
	if !finished {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	ackCtx, stop := context.WithTimeout(context.WithoutCancel(parent), 5*time.Second)
	defer stop()
	if err := s.cfg.Queue.Ack(ackCtx, current); errors.Is(err, errs.ErrConflict) {
		// Removed already: the run stopped in requires_action (approval.go).
		s.log.Debug("ack run: entry gone", "run_id", l.RunID, "err", err)
	} else if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Warn("ack run", "run_id", l.RunID, "err", err)
	}
}

// tenantOf returns the run's tenant, for the executor.
func (s *Server) tenantOf(ctx context.Context, tenantID string) (store.Tenant, error) {
	return s.cfg.Store.GetTenant(ctx, tenantID)
}

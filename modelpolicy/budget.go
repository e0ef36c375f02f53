package modelpolicy

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// Budget allocations.
//
// A call does not write the store to reserve budget. Each (tenant, window)
// has an in-memory allocation leased from the store in chunks with
// store.UsageStore.ReserveBudget: a chunk is max(10 × the call's estimate,
// 2% of the budget), capped by what the store says remains. Calls hold
// their estimate against the allocation under its mutex and, when done,
// replace it by their real usage; the store is called only when the
// allocation runs out. The store's reservations therefore always cover
// what the replica may spend, so several replicas sharing a store still
// cannot overshoot: the overshoot is bounded, as before, by one call's
// real usage exceeding its estimate.
//
// An allocation is retired (and its chunks settled with SettleBudget to
// the real usage, returning the unused part) when its window rolls over,
// periodically (every settle interval, while started) and on Flush and
// Stop. A retired allocation with calls still in flight is settled when
// the last ends.

const (
	chunkEstimateFactor = 10 // a chunk is at least this many times the call's estimate
	chunkBudgetDivisor  = 50 // ... and at least 1/50 (2%) of the budget
	leaseAttempts       = 3
)

type budgetKey struct{ tenant, window string }

// allocation is the budget a replica leased for one tenant and window.
type allocation struct {
	key   budgetKey
	start time.Time

	mu         sync.Mutex
	chunks     []store.Reservation
	grantTok   int64
	grantCost  float64
	usedTok    int64 // real usage of finished calls
	usedCost   float64
	holdTok    int64 // estimates of calls in flight
	holdCost   float64
	inflight   int
	retired    bool
	settleSent bool
}

// budgetHold is one call's hold on an allocation.
type budgetHold struct {
	a      *allocation
	tokens int64
	cost   float64
	done   bool
}

// budgets keeps the allocations of one server.
type budgets struct {
	st  store.UsageStore
	log *slog.Logger

	mu sync.Mutex // guards m; never held while taking an allocation's mu
	m  map[budgetKey]*allocation

	pmu     sync.Mutex               // guards pending; may be taken under an allocation's mu
	pending map[*allocation]struct{} // retired, not yet settled
	settles sync.WaitGroup
}

func newBudgets(st store.UsageStore, log *slog.Logger) *budgets {
	return &budgets{st: st, log: log, m: map[budgetKey]*allocation{}, pending: map[*allocation]struct{}{}}
}

// current returns the allocation of key for the window starting at start,
// retiring one of an older window.
func (b *budgets) current(key budgetKey, start time.Time) *allocation {
	b.mu.Lock()
	a := b.m[key]
	if a != nil && a.start.Equal(start) {
		b.mu.Unlock()
		return a
	}
	old := a
	a = &allocation{key: key, start: start}
	b.m[key] = a
	b.mu.Unlock()
	if old != nil {
		b.retire(old)
	}
	return a
}

// retire marks a (already out of the live set) retired and settles it now
// or when its last call ends.
func (b *budgets) retire(a *allocation) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.retired {
		return
	}
	a.retired = true
	if len(a.chunks) == 0 {
		return
	}
	b.pmu.Lock()
	b.pending[a] = struct{}{}
	b.pmu.Unlock()
	if a.inflight == 0 {
		b.sendSettleLocked(a)
	}
}

// sendSettleLocked starts settling a (a.mu held, a retired, nothing in flight).
func (b *budgets) sendSettleLocked(a *allocation) {
	if a.settleSent {
		return
	}
	a.settleSent = true
	tok, cost := a.usedTok+a.holdTok, a.usedCost+a.holdCost
	chunks := a.chunks
	b.settles.Add(1)
	go func() {
		defer b.settles.Done()
		b.settle(a, chunks, tok, cost)
	}()
}

// settle replaces the allocation's chunk reservations by the real usage:
// each chunk takes up to its size, the last one any excess.
func (b *budgets) settle(a *allocation, chunks []store.Reservation, tok int64, cost float64) {
	for i, r := range chunks {
		t, c := min(tok, r.Tokens), min(cost, r.CostUSD)
		if i == len(chunks)-1 {
			t, c = tok, cost
		}
		tok, cost = tok-t, cost-c
		var err error
		for attempt := range 3 {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt*attempt) * 20 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = b.st.SettleBudget(ctx, r, t, max(c, 0))
			cancel()
			if err == nil || errors.Is(err, errs.ErrNotFound) || errs.CodeOf(err) == errs.InvalidRequest {
				break
			}
		}
		if err != nil {
			b.log.Error("settle budget failed", "err", err, "tenant_id", r.TenantID, "reservation_id", r.ReservationID)
		}
	}
	b.pmu.Lock()
	delete(b.pending, a)
	b.pmu.Unlock()
}

// acquire holds tokens and cost (the call's worst case) against the
// tenant's allocation for the window, leasing a chunk from the store when
// the allocation cannot cover them. Over the budget: quota_exceeded with
// limit, used, requested, window and resource.
func (b *budgets) acquire(ctx context.Context, tenantID string, tb store.TokenBudget, window string, start time.Time, tokens int64, cost float64) (*budgetHold, error) {
	key := budgetKey{tenantID, window}
	for {
		a := b.current(key, start)
		a.mu.Lock()
		if a.retired { // retired between lookup and lock: take the new one
			a.mu.Unlock()
			continue
		}
		needTok := int64(0)
		if tb.MaxTokens > 0 {
			needTok = tokens - (a.grantTok - a.usedTok - a.holdTok)
		}
		needCost := 0.0
		if tb.MaxCostUSD > 0 {
			needCost = cost - (a.grantCost - a.usedCost - a.holdCost)
		}
		if needTok > 0 || needCost > 0 {
			if err := b.lease(ctx, a, tb, tokens, cost, needTok, needCost); err != nil {
				a.mu.Unlock()
				return nil, err
			}
		} else if len(a.chunks) == 0 {
			// No limit needs leasing but usage must still be settled
			// somewhere: a zero chunk records it.
			if err := b.lease(ctx, a, tb, tokens, cost, 0, 0); err != nil {
				a.mu.Unlock()
				return nil, err
			}
		}
		a.holdTok += tokens
		a.holdCost += cost
		a.inflight++
		a.mu.Unlock()
		return &budgetHold{a: a, tokens: tokens, cost: cost}, nil
	}
}

// lease reserves one more chunk for a (a.mu held) covering at least
// needTok and needCost.
func (b *budgets) lease(ctx context.Context, a *allocation, tb store.TokenBudget, tokens int64, cost float64, needTok int64, needCost float64) error {
	var chunkTok int64
	var chunkCost float64
	if tb.MaxTokens > 0 {
		chunkTok = max(chunkEstimateFactor*tokens, tb.MaxTokens/chunkBudgetDivisor, needTok)
	}
	if tb.MaxCostUSD > 0 {
		chunkCost = max(chunkEstimateFactor*cost, tb.MaxCostUSD/chunkBudgetDivisor, needCost)
	}
	p := store.ReserveParams{TenantID: a.key.tenant, Window: a.key.window, WindowStart: a.start,
		MaxTokens: tb.MaxTokens, MaxCostUSD: tb.MaxCostUSD}
	var lastErr error
	for range leaseAttempts {
		p.Tokens, p.CostUSD = chunkTok, chunkCost
		r, err := b.st.ReserveBudget(context.WithoutCancel(ctx), p)
		if err == nil {
			a.chunks = append(a.chunks, r)
			a.grantTok += r.Tokens
			a.grantCost += r.CostUSD
			return nil
		}
		if !errors.Is(err, errs.ErrQuotaExceeded) {
			return errs.Wrap(errs.DependencyUnavailable, err, "cannot reserve budget")
		}
		lastErr = err
		// Cap the chunk by what remains, if that still covers the call.
		used, uerr := b.st.BudgetUsage(context.WithoutCancel(ctx), a.key.tenant, a.key.window, a.start)
		if uerr != nil {
			return errs.Wrap(errs.DependencyUnavailable, uerr, "cannot read budget usage")
		}
		remTok, remCost := tb.MaxTokens-used.UsedTokens, tb.MaxCostUSD-used.UsedCostUSD
		if tb.MaxTokens > 0 && remTok < needTok {
			return b.exceeded(a, "tokens", tb.MaxTokens, used.UsedTokens, tokens, tb, lastErr)
		}
		if tb.MaxCostUSD > 0 && remCost < needCost {
			return b.exceeded(a, "cost_usd", tb.MaxCostUSD, used.UsedCostUSD, cost, tb, lastErr)
		}
		if tb.MaxTokens > 0 {
			chunkTok = min(chunkTok, remTok)
		}
		if tb.MaxCostUSD > 0 {
			chunkCost = min(chunkCost, remCost)
		}
	}
	return lastErr
}

// exceeded is the quota_exceeded error for a call the budget cannot cover.
// used counts what the window has consumed or promised, without this
// replica's unused allocation.
func (b *budgets) exceeded(a *allocation, resource string, limit, storeUsed, requested any, tb store.TokenBudget, cause error) error {
	var used any
	switch resource {
	case "tokens":
		used = storeUsed.(int64) - (a.grantTok - a.usedTok - a.holdTok)
	default:
		used = storeUsed.(float64) - (a.grantCost - a.usedCost - a.holdCost)
	}
	msg := errs.As(cause).Message
	return (&errs.Error{Code: errs.QuotaExceeded, Message: msg}).WithDetails(map[string]any{
		"limit": limit, "used": used, "requested": requested, "window": a.key.window, "resource": resource})
}

// release ends a call's hold, replacing its estimate by its real usage.
func (b *budgets) release(h *budgetHold, tokens int64, cost float64) {
	if h == nil || h.done {
		return
	}
	h.done = true
	a := h.a
	a.mu.Lock()
	defer a.mu.Unlock()
	a.holdTok -= h.tokens
	a.holdCost -= h.cost
	a.usedTok += tokens
	a.usedCost += cost
	a.inflight--
	if a.retired && a.inflight == 0 {
		b.sendSettleLocked(a)
	}
}

// retireAll retires every live allocation (settling those without calls
// in flight).
func (b *budgets) retireAll() {
	b.mu.Lock()
	live := make([]*allocation, 0, len(b.m))
	for k, a := range b.m {
		live = append(live, a)
		delete(b.m, k)
	}
	b.mu.Unlock()
	for _, a := range live {
		b.retire(a)
	}
}

// flush retires every allocation and waits until all retired ones are
// settled or ctx ends; then allocations still waiting for calls in flight
// are settled counting those calls' estimates as used.
func (b *budgets) flush(ctx context.Context) error {
	b.retireAll()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		b.pmu.Lock()
		n := len(b.pending)
		b.pmu.Unlock()
		if n == 0 {
			b.settles.Wait()
			return nil
		}
		select {
		case <-t.C:
			continue
		case <-ctx.Done():
		}
		b.pmu.Lock()
		waiting := make([]*allocation, 0, len(b.pending))
		for a := range b.pending {
			waiting = append(waiting, a)
		}
		b.pmu.Unlock()
		for _, a := range waiting {
			a.mu.Lock()
			b.sendSettleLocked(a)
			a.mu.Unlock()
		}
		b.settles.Wait()
		return ctx.Err()
	}
}

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

// Batching writer for the usage ledger and the audit log.
//
// A call hands its usage record and audit record to the writer and goes
// on: one flusher goroutine drains up to maxBatch records (or what arrives
// within maxDelay of the first) and writes them with two store calls, the
// batch's usage records in one transaction and its audit records in
// another (the two run concurrently, so a store with group commit may
// join them). A full buffer blocks the caller (backpressure) rather than
// dropping records. A failed batch is retried a few times, then its
// records are written one by one (so one bad record cannot lose the
// others) and what still fails is logged and counted. Flush waits for
// everything queued so far; Close flushes everything and stops the
// flusher. The flusher runs from start to Close; before start and after
// Close records are written synchronously, so none is lost.

const (
	writerBuffer   = 8192
	writerMaxBatch = 256
	writerMaxDelay = 10 * time.Millisecond
	writerAttempts = 4
)

// writeItem is one record to write, or a flush barrier.
type writeItem struct {
	usage   *store.UsageRecord
	audit   *store.AuditRecord
	barrier chan struct{}
}

type recordWriter struct {
	usage    func(context.Context, ...store.UsageRecord) error
	audit    AuditRecorder
	log      *slog.Logger
	onFail   func(audit bool)
	maxDelay time.Duration

	mu      sync.RWMutex // senders hold it shared; start and Close take it exclusively
	running bool         // the flusher drains ch
	started bool
	closed  bool
	ch      chan writeItem
	done    chan struct{} // closed when the flusher returns
}

func newRecordWriter(usage func(context.Context, ...store.UsageRecord) error, audit AuditRecorder, log *slog.Logger, onFail func(audit bool), maxDelay time.Duration) *recordWriter {
	if maxDelay <= 0 {
		maxDelay = writerMaxDelay
	}
	return &recordWriter{usage: usage, audit: audit, log: log, onFail: onFail, maxDelay: maxDelay,
		ch: make(chan writeItem, writerBuffer), done: make(chan struct{})}
}

// start starts the flusher; Close stops it and waits for it. Starting a
// started or closed writer does nothing.
func (w *recordWriter) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed {
		return
	}
	w.started, w.running = true, true
	go w.run()
}

// put queues it, blocking while the buffer is full. While no flusher runs
// (before start, after Close) the record is written synchronously so
// nothing is lost.
func (w *recordWriter) put(it writeItem) {
	w.mu.RLock()
	if !w.running {
		w.mu.RUnlock()
		if it.barrier != nil {
			close(it.barrier)
			return
		}
		w.write(it)
		return
	}
	w.ch <- it
	w.mu.RUnlock()
}

// Usage queues a usage record.
func (w *recordWriter) Usage(u store.UsageRecord) { w.put(writeItem{usage: &u}) }

// Audit queues an audit record.
func (w *recordWriter) Audit(r store.AuditRecord) { w.put(writeItem{audit: &r}) }

// Flush waits until every record queued before it is written, or ctx ends.
func (w *recordWriter) Flush(ctx context.Context) error {
	b := make(chan struct{})
	w.put(writeItem{barrier: b})
	select {
	case <-b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes everything queued and stops the flusher, waiting for it.
// Idempotent.
func (w *recordWriter) Close() {
	w.mu.Lock()
	w.closed = true
	if w.running {
		w.running = false
		close(w.ch)
	}
	started := w.started
	w.mu.Unlock()
	if started {
		<-w.done
	}
}

func (w *recordWriter) run() {
	defer close(w.done)
	batch := make([]writeItem, 0, writerMaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		it, ok := <-w.ch
		if !ok {
			return
		}
		batch = append(batch[:0], it)
		open := true
		if it.barrier == nil {
			timer.Reset(w.maxDelay)
		collect:
			for len(batch) < writerMaxBatch {
				select {
				case it, ok := <-w.ch:
					if !ok {
						open = false
						break collect
					}
					batch = append(batch, it)
					if it.barrier != nil {
						break collect
					}
				case <-timer.C:
					break collect
				}
			}
			timer.Stop()
		}
		w.writeBatch(batch)
		if !open {
			return
		}
	}
}

// writeBatch writes the batch's usage and audit records, then releases
// its barriers.
func (w *recordWriter) writeBatch(batch []writeItem) {
	var usage []store.UsageRecord
	var audit []store.AuditRecord
	for _, it := range batch {
		switch {
		case it.usage != nil:
			usage = append(usage, *it.usage)
		case it.audit != nil:
			audit = append(audit, *it.audit)
		}
	}
	var wg sync.WaitGroup
	if len(usage) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.writeAll(usage, nil, writerAttempts)
		}()
	}
	if len(audit) > 0 {
		w.writeAll(nil, audit, writerAttempts)
	}
	wg.Wait()
	for _, it := range batch {
		if it.barrier != nil {
			close(it.barrier)
		}
	}
}

// write writes one record (while no flusher runs).
func (w *recordWriter) write(it writeItem) {
	switch {
	case it.usage != nil:
		w.writeAll([]store.UsageRecord{*it.usage}, nil, writerAttempts)
	case it.audit != nil:
		w.writeAll(nil, []store.AuditRecord{*it.audit}, writerAttempts)
	}
}

// writeAll writes usage or audit records in one store call, making up to
// attempts attempts. When they all fail because of one record (invalid, or
// conflicting with a stored one), a batch of several is written record by
// record, one attempt each, so only that record is lost. Any other failure
// (the store down or timing out) loses the batch: logged and counted per
// record, without waiting on the store once per record.
func (w *recordWriter) writeAll(usage []store.UsageRecord, audit []store.AuditRecord, attempts int) {
	err := w.retry(attempts, func(ctx context.Context) error {
		if usage != nil {
			return w.usage(ctx, usage...)
		}
		_, err := w.audit.RecordBatch(ctx, audit)
		return err
	})
	if len(usage) == 1 && errors.Is(err, errs.ErrConflict) {
		// Its id is stored: an earlier attempt committed and its
		// acknowledgement was lost.
		err = nil
	}
	if err == nil {
		return
	}
	n := len(usage) + len(audit)
	if n > 1 && (errors.Is(err, errs.ErrInvalid) || errors.Is(err, errs.ErrConflict)) {
		for _, u := range usage {
			w.writeAll([]store.UsageRecord{u}, nil, 1)
		}
		for _, r := range audit {
			w.writeAll(nil, []store.AuditRecord{r}, 1)
		}
		return
	}
	if usage != nil {
		w.log.Error("record usage failed", "err", err, "records", n, "tenant_id", usage[0].TenantID, "usage_id", usage[0].UsageID)
	} else {
		w.log.Error("audit record failed", "err", err, "records", n, "tenant_id", audit[0].TenantID, "action", audit[0].Action, "audit_id", audit[0].AuditID)
	}
	if w.onFail != nil {
		for range n {
			w.onFail(audit != nil)
		}
	}
}

// retry calls fn up to attempts times with a growing pause, each attempt
// with its own timeout.
func (w *recordWriter) retry(attempts int, fn func(context.Context) error) error {
	var err error
	for attempt := range attempts {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt*attempt) * 10 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = fn(ctx)
		cancel()
		if err == nil {
			return nil
		}
	}
	return err
}

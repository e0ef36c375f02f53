package modelpolicy

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/store"
)

// Batching writer for the usage ledger and the audit log.
//
// A call hands its usage record and audit record to the writer and goes
// on: one flusher goroutine drains up to maxBatch records (or what arrives
// within maxDelay of the first) and writes them, issuing the batch's
// writes concurrently so a store with group commit combines them into
// shared transactions. A full buffer blocks the caller (backpressure)
// rather than dropping records. A failed write is retried a few times,
// then logged and counted. Flush waits for everything queued so far;
// Close flushes everything and stops the flusher.

const (
	writerBuffer     = 8192
	writerMaxBatch   = 256
	writerMaxDelay   = 10 * time.Millisecond
	writerAttempts   = 4
	writerWriteLimit = 256 // concurrent writes of one batch (a whole batch joins one group commit)
)

// writeItem is one record to write, or a flush barrier.
type writeItem struct {
	usage   *store.UsageRecord
	audit   *store.AuditRecord
	barrier chan struct{}
}

type recordWriter struct {
	usage    func(context.Context, store.UsageRecord) error
	audit    AuditRecorder
	log      *slog.Logger
	onFail   func(audit bool)
	maxDelay time.Duration

	mu     sync.RWMutex // senders hold it shared; close takes it exclusively
	closed bool
	ch     chan writeItem
	done   chan struct{}
}

func newRecordWriter(usage func(context.Context, store.UsageRecord) error, audit AuditRecorder, log *slog.Logger, onFail func(audit bool), maxDelay time.Duration) *recordWriter {
	if maxDelay <= 0 {
		maxDelay = writerMaxDelay
	}
	w := &recordWriter{usage: usage, audit: audit, log: log, onFail: onFail, maxDelay: maxDelay,
		ch: make(chan writeItem, writerBuffer), done: make(chan struct{})}
	go w.run()
	return w
}

// put queues it, blocking while the buffer is full. After close the
// record is written synchronously so nothing is lost.
func (w *recordWriter) put(it writeItem) {
	w.mu.RLock()
	if w.closed {
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

// Close writes everything queued and stops the flusher. Idempotent.
func (w *recordWriter) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	w.mu.Unlock()
	<-w.done
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

// writeBatch writes the records concurrently (bounded), then releases the
// barriers.
func (w *recordWriter) writeBatch(batch []writeItem) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, writerWriteLimit)
	for _, it := range batch {
		if it.barrier != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			w.write(it)
		}()
	}
	wg.Wait()
	for _, it := range batch {
		if it.barrier != nil {
			close(it.barrier)
		}
	}
}

// write writes one record, retrying failures.
func (w *recordWriter) write(it writeItem) {
	var err error
	for attempt := range writerAttempts {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt*attempt) * 10 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		switch {
		case it.usage != nil:
			err = w.usage(ctx, *it.usage)
		case it.audit != nil:
			_, err = w.audit.Record(ctx, *it.audit)
		}
		cancel()
		if err == nil {
			return
		}
	}
	if it.usage != nil {
		w.log.Error("record usage failed", "err", err, "tenant_id", it.usage.TenantID, "usage_id", it.usage.UsageID)
	} else {
		w.log.Error("audit record failed", "err", err, "tenant_id", it.audit.TenantID, "action", it.audit.Action, "audit_id", it.audit.AuditID)
	}
	if w.onFail != nil {
		w.onFail(it.audit != nil)
	}
}

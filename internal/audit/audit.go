// Package audit records who did what to which object: every record goes to
// the store's append-only, hash-chained audit log (the source of truth) and
// then, as one JSON line, to an optional sink (stdout, stderr or a file).
// Verify checks a chain for tampering.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

// Outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
	OutcomeFailure = "failure"
)

// Auditor appends audit records. Safe for concurrent use.
type Auditor struct {
	st     store.AuditLog
	sink   io.Writer
	mu     sync.Mutex // serializes sink writes so lines never interleave
	now    func() time.Time
	logger *slog.Logger
}

// New returns an Auditor writing to st and, when sink is non-nil, to sink.
func New(st store.AuditLog, sink io.Writer) *Auditor {
	return &Auditor{st: st, sink: sink, now: time.Now, logger: slog.Default()}
}

// Record fills the record's missing AuditID (aud_…), Time (now, UTC),
// CorrelationID (the request's), TenantID and PrincipalID (the request's
// Auth Context; its actor, with OnBehalfOf the principal it acts for) and Outcome ("success"), appends it to the store, and
// writes the stored record (with Seq and hashes) as one JSON line to the
// sink. A sink failure is logged, not returned: the store is the source of
// truth. Action is required (invalid_request otherwise).
func (a *Auditor) Record(ctx context.Context, r store.AuditRecord) (store.AuditRecord, error) {
	out, err := a.RecordBatch(ctx, []store.AuditRecord{r})
	if err != nil {
		return store.AuditRecord{}, err
	}
	return out[0], nil
}

// RecordBatch records rs as Record does, in order, appended in one store
// transaction: all of them or, on error, none.
func (a *Auditor) RecordBatch(ctx context.Context, rs []store.AuditRecord) ([]store.AuditRecord, error) {
	filled := make([]store.AuditRecord, len(rs))
	for i, r := range rs {
		if strings.TrimSpace(r.Action) == "" {
			return nil, errs.Field("action", "required")
		}
		filled[i] = a.fill(ctx, r)
	}
	stored, err := a.st.AppendAudits(ctx, filled)
	if err != nil {
		return nil, err
	}
	if a.sink != nil {
		a.writeSink(ctx, stored)
	}
	return stored, nil
}

func (a *Auditor) fill(ctx context.Context, r store.AuditRecord) store.AuditRecord {
	if r.AuditID == "" {
		r.AuditID = ids.New("aud_")
	}
	if r.Time.IsZero() {
		r.Time = a.now()
	}
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	if r.CorrelationID == "" {
		r.CorrelationID = httpx.CorrelationID(ctx)
	}
	if ac, ok := auth.From(ctx); ok {
		if r.TenantID == "" {
			r.TenantID = ac.TenantID
		}
		if r.PrincipalID == "" {
			r.PrincipalID, r.OnBehalfOf = ac.ActorID(), ac.OnBehalfOf()
		}
	}
	if r.Outcome == "" {
		r.Outcome = OutcomeSuccess
	}
	return r
}

// writeSink writes the stored records to the sink, one JSON line each.
func (a *Auditor) writeSink(ctx context.Context, stored []store.AuditRecord) {
	if len(stored) == 0 {
		return
	}
	var buf []byte
	for _, r := range stored {
		line, err := json.Marshal(r)
		if err != nil {
			a.logger.ErrorContext(ctx, "audit sink encode failed", "err", err, "audit_id", r.AuditID, "seq", r.Seq)
			continue
		}
		buf = append(append(buf, line...), '\n')
	}
	a.mu.Lock()
	_, err := a.sink.Write(buf)
	a.mu.Unlock()
	if err != nil {
		a.logger.ErrorContext(ctx, "audit sink write failed", "err", err, "records", len(stored),
			"first_seq", stored[0].Seq)
	}
}

// nopCloser keeps the process's stdout/stderr open when the sink is closed.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// discard is the "none" sink.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Close() error                { return nil }

// OpenSink opens the audit sink named by AGENTOS_AUDIT_SINK: "stdout",
// "stderr", "file:PATH" (directories created 0700, file opened for append
// with mode 0600) or "none". Closing a stdout/stderr sink leaves the stream
// open.
func OpenSink(spec string) (io.WriteCloser, error) {
	switch spec {
	case "stdout":
		return nopCloser{os.Stdout}, nil
	case "stderr":
		return nopCloser{os.Stderr}, nil
	case "none", "off":
		return discard{}, nil
	}
	path, ok := strings.CutPrefix(spec, "file:")
	if !ok || path == "" {
		return nil, fmt.Errorf("audit sink %q: want stdout, stderr, none or file:PATH", spec)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit sink: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit sink: %w", err)
	}
	return f, nil
}

// Verify checks a run of consecutive records (in Seq order): each Hash
// must equal store.HashAudit of the record, each PrevHash the previous
// record's Hash, Seq must increase by one, and a chain starting at Seq 1
// must have an empty PrevHash. It returns the first broken Seq and why.
func Verify(records []store.AuditRecord) (ok bool, brokenSeq int64, reason string) {
	var c Chain
	for _, r := range records {
		if ok, reason := c.Next(r); !ok {
			return false, r.Seq, reason
		}
	}
	return true, 0, ""
}

// Chain verifies records one at a time, so a long log can be checked page
// by page. The zero value expects any starting record.
type Chain struct {
	started  bool
	prevSeq  int64
	prevHash string
	// Count is the number of records verified.
	Count int64
}

// Next verifies r as the record following the previous one.
func (c *Chain) Next(r store.AuditRecord) (ok bool, reason string) {
	if got := store.HashAudit(r); got != r.Hash {
		return false, fmt.Sprintf("hash mismatch: record content does not match its hash (stored %s, computed %s)", short(r.Hash), short(got))
	}
	if !c.started {
		if r.Seq < 1 {
			return false, fmt.Sprintf("invalid seq %d", r.Seq)
		}
		if r.Seq == 1 && r.PrevHash != "" {
			return false, "first record has a non-empty prev_hash"
		}
	} else {
		if r.Seq != c.prevSeq+1 {
			return false, fmt.Sprintf("seq gap: expected %d after %d, got %d", c.prevSeq+1, c.prevSeq, r.Seq)
		}
		if r.PrevHash != c.prevHash {
			return false, fmt.Sprintf("prev_hash %s does not match the hash %s of record %d", short(r.PrevHash), short(c.prevHash), c.prevSeq)
		}
	}
	c.started, c.prevSeq, c.prevHash = true, r.Seq, r.Hash
	c.Count++
	return true, ""
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	if h == "" {
		return `""`
	}
	return h
}

// Result is the outcome of VerifyLog.
type Result struct {
	OK        bool
	Records   int64
	BrokenSeq int64
	Reason    string
}

// VerifyLog reads the whole audit log of st (every tenant, in Seq order,
// pageSize records at a time; 0 means 1000) and verifies the chain from
// seq 1. A non-nil error means the log could not be read. (Records cut off
// the end of the log leave no trace in the chain itself; compare Records
// with the sink's copy to detect that.)
func VerifyLog(ctx context.Context, st store.AuditLog, pageSize int) (Result, error) {
	if pageSize <= 0 {
		pageSize = 1000
	}
	var c Chain
	after := int64(0)
	for {
		page, err := st.ListAudit(ctx, store.ListAuditParams{AfterSeq: after, Limit: pageSize})
		if err != nil {
			return Result{}, err
		}
		if len(page) == 0 {
			return Result{OK: true, Records: c.Count}, nil
		}
		for _, r := range page {
			if !c.started && r.Seq != 1 {
				return Result{Records: c.Count, BrokenSeq: r.Seq,
					Reason: fmt.Sprintf("log starts at seq %d: records before it are missing", r.Seq)}, nil
			}
			if ok, reason := c.Next(r); !ok {
				return Result{Records: c.Count, BrokenSeq: r.Seq, Reason: reason}, nil
			}
		}
		next := page[len(page)-1].Seq
		if next <= after {
			return Result{}, errors.New("audit log listing did not advance")
		}
		after = next
	}
}

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
	"slices"
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

// Verify checks a run of consecutive records (in Seq order) with a Chain.
// It returns the first broken Seq and why.
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
//
// A record stored in canonical form (r.Stored.Canonical) must hash to
// r.Hash (SHA-256 of exactly the stored bytes), and the record as read
// (its columns) must encode to those same bytes. A record not read from a
// store (Stored nil: a sink line) is encoded again (store.CanonicalAudit is
// exact for a decoded record). A legacy record (written
// before the canonical form, Canonical nil) is checked with the rule its
// writer used: store.LegacyHashAuditEncoded over its stored map columns,
// or store.LegacyHashAudit (re-encoded maps) for the few records whose
// columns a store rewrote. Legacy records may only precede canonical ones:
// the switch happens once, at the first canonical record, and a legacy
// record after it is a break (else stripping a record's canonical bytes
// would downgrade it to the weaker rule). Each record's PrevHash must be
// the previous record's Hash, Seq must increase by one, and a chain
// starting at Seq 1 must have an empty PrevHash.
type Chain struct {
	started  bool
	prevSeq  int64
	prevHash string
	// Count is the number of records verified.
	Count int64
	// SwitchSeq is the Seq of the first canonical record seen (0: none).
	SwitchSeq int64
	// Legacy is the number of legacy records verified.
	Legacy int64
}

// Next verifies r as the record following the previous one.
func (c *Chain) Next(r store.AuditRecord) (ok bool, reason string) {
	var canonical bool
	switch {
	case r.Stored != nil && r.Stored.Canonical != nil:
		canonical = true
		reason = checkCanonical(r)
	case r.Stored == nil && hashOfRecord(r) == r.Hash:
		// Not read from a store (a sink line, an API response): its
		// canonical form is recomputed, exactly, from the values.
		canonical = true
	case c.SwitchSeq != 0:
		reason = fmt.Sprintf("record is not in the canonical form, but records are canonical since seq %d (legacy format after the switch, or content that does not match its hash)", c.SwitchSeq)
	default:
		reason = checkLegacy(r)
	}
	if reason != "" {
		return false, reason
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
	if canonical && c.SwitchSeq == 0 {
		c.SwitchSeq = r.Seq
	}
	if !canonical {
		c.Legacy++
	}
	c.started, c.prevSeq, c.prevHash = true, r.Seq, r.Hash
	c.Count++
	return true, ""
}

// checkCanonical checks a canonical record: stored bytes against the hash,
// then the record as read against the stored bytes ("" when intact).
func checkCanonical(r store.AuditRecord) string {
	stored := r.Stored.Canonical
	if got := store.HashCanonical(stored); got != r.Hash {
		return fmt.Sprintf("hash mismatch: the stored record bytes do not match its hash (stored %s, computed %s)", short(r.Hash), short(got))
	}
	again, err := store.CanonicalAudit(r)
	if err != nil {
		return "the record as read cannot be encoded: " + err.Error()
	}
	if string(again) != string(stored) {
		return "the record's columns differ from its hashed bytes (" + diffFields(stored, again) + ")"
	}
	return ""
}

// diffFields names the top-level fields in which two canonical records
// differ.
func diffFields(stored, read []byte) string {
	var a, b map[string]json.RawMessage
	if json.Unmarshal(stored, &a) != nil || json.Unmarshal(read, &b) != nil {
		return "undecodable"
	}
	var names []string
	for k, v := range a {
		if w, ok := b[k]; !ok || string(w) != string(v) {
			names = append(names, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return "field " + strings.Join(names, ", ")
}

// hashOfRecord is the hash r would have if stored canonically ("" if it
// cannot be encoded).
func hashOfRecord(r store.AuditRecord) string {
	b, err := store.CanonicalAudit(r)
	if err != nil {
		return ""
	}
	return store.HashCanonical(b)
}

func checkLegacy(r store.AuditRecord) string {
	if r.Stored != nil && store.LegacyHashAuditEncoded(r, r.Stored.PolicyContext, r.Stored.Details) == r.Hash {
		return ""
	}
	if got := store.LegacyHashAudit(r); got != r.Hash {
		return fmt.Sprintf("hash mismatch: legacy record content does not match its hash (stored %s, computed %s)", short(r.Hash), short(got))
	}
	return ""
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
	// BrokenID is the AuditID of the broken record ("" when none).
	BrokenID string
	Reason   string
	// Legacy is the number of legacy records (verified with the old rule);
	// SwitchSeq the first canonical record's Seq (0: none).
	Legacy, SwitchSeq int64
	// HeadSeq and HeadHash are the last verified record's.
	HeadSeq  int64
	HeadHash string
	// Hashes holds the Hash of the records at the Seqs asked for
	// (VerifyLogAt), for checkpoint comparison.
	Hashes map[int64]string
}

// VerifyLog reads the whole audit log of st (every tenant, in Seq order,
// pageSize records at a time; 0 means 1000) and verifies the chain from
// seq 1. A non-nil error means the log could not be read. Records cut off
// the end of the log, or a chain rewritten and re-hashed as a whole, leave
// no trace in the chain itself: VerifyCheckpoints compares the result with
// signed checkpoints kept outside the store.
func VerifyLog(ctx context.Context, st store.AuditLog, pageSize int) (Result, error) {
	return VerifyLogAt(ctx, st, pageSize, nil)
}

// VerifyLogAt is VerifyLog that also collects, in Result.Hashes, the Hash
// of the records at seqs (those the chain reaches).
func VerifyLogAt(ctx context.Context, st store.AuditLog, pageSize int, seqs []int64) (Result, error) {
	if pageSize <= 0 {
		pageSize = 1000
	}
	want := make(map[int64]bool, len(seqs))
	for _, s := range seqs {
		want[s] = true
	}
	res := Result{Hashes: map[int64]string{}}
	var c Chain
	done := func(broken store.AuditRecord, reason string) Result {
		res.Records, res.Legacy, res.SwitchSeq = c.Count, c.Legacy, c.SwitchSeq
		res.HeadSeq, res.HeadHash = c.prevSeq, c.prevHash
		if reason == "" {
			res.OK = true
		} else {
			res.BrokenSeq, res.BrokenID, res.Reason = broken.Seq, broken.AuditID, reason
		}
		return res
	}
	after := int64(0)
	for {
		page, err := st.ListAudit(ctx, store.ListAuditParams{AfterSeq: after, Limit: pageSize})
		if err != nil {
			return Result{}, err
		}
		if len(page) == 0 {
			return done(store.AuditRecord{}, ""), nil
		}
		for _, r := range page {
			if !c.started && r.Seq != 1 {
				return done(r, fmt.Sprintf("log starts at seq %d: records before it are missing", r.Seq)), nil
			}
			if ok, reason := c.Next(r); !ok {
				return done(r, reason), nil
			}
			if want[r.Seq] {
				res.Hashes[r.Seq] = r.Hash
			}
		}
		next := page[len(page)-1].Seq
		if next <= after {
			return Result{}, errors.New("audit log listing did not advance")
		}
		after = next
	}
}

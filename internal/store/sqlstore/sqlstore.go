// Package sqlstore is the dialect-free half of the SQL store adapters
// (internal/store/sqlite and internal/store/postgres): what both do the same
// way, written once, so that they encode the same JSON columns, fill the same
// defaults, apply the same checks and return the same errors. It holds the
// JSON column codecs, run admission defaults, event sequencing, the
// run-change and admission logic over a transaction of statements (Tx), audit
// preparation and chaining, budget and KV quota errors, replicated-event
// codecs, the errors every driver shares (MapError) and the embedded
// migration list. It knows no SQL dialect and no driver: the SQL, time
// columns and each driver's own error codes stay in the adapters.
package sqlstore

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

// DefaultIdempotencyTTL is used when CreateRunParams.IdempotencyTTL is 0.
const DefaultIdempotencyTTL = 24 * time.Hour

// CostEpsilon absorbs floating-point noise when comparing summed costs.
const CostEpsilon = 1e-9

// Limits of list calls: the default when a caller asks for none (or a
// negative number) and the most one call returns.
const (
	DefaultRunLimit   = 50
	MaxRunLimit       = 1000
	DefaultEventLimit = 1000
	MaxEventLimit     = 10000
	DefaultAuditLimit = 100
	MaxAuditLimit     = 10000
)

// Limit returns n, or def when n <= 0, capped at most.
func Limit(n, def, most int) int {
	if n <= 0 {
		n = def
	}
	return min(n, most)
}

// UTC normalizes t to what the stores return: UTC, microsecond precision
// (the zero time stays zero).
func UTC(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// UTCPtr is UTC for a nullable time.
func UTCPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := UTC(*t)
	return &v
}

// ToJSON encodes a JSON column. The domain types are plain data, so Marshal
// only fails on values such as NaN, reported as invalid input naming field.
func ToJSON(field string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", errs.Field(field, "cannot be encoded: %v", err)
	}
	return string(b), nil
}

// NullableJSON encodes a map column; nil is NULL.
func NullableJSON(field string, m map[string]any) (any, error) {
	if m == nil {
		return nil, nil
	}
	return ToJSON(field, m)
}

// FromJSON decodes a JSON column; NULL or empty leaves v unchanged.
func FromJSON(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errs.Wrap(errs.Internal, err, "corrupt JSON column")
	}
	return nil
}

// FromJSONNumbers is FromJSON keeping numbers in maps as json.Number, so
// that re-encoding is byte-identical (audit hashes depend on it).
func FromJSONNumbers(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return errs.Wrap(errs.Internal, err, "corrupt JSON column")
	}
	return nil
}

// RawOrNull stores a json.RawMessage verbatim; empty is NULL.
func RawOrNull(m json.RawMessage) any {
	if len(m) == 0 {
		return nil
	}
	return string(m)
}

// RawFrom reads a verbatim JSON column; NULL (nil) is nil.
func RawFrom(b []byte) json.RawMessage {
	if b == nil {
		return nil
	}
	return json.RawMessage(b)
}

// TenantColumns are a tenant's JSON columns.
type TenantColumns struct {
	Entitlements, Quotas, Metadata string
}

// EncodeTenant validates t (store.ValidateTenantRecord) and encodes its
// JSON columns.
func EncodeTenant(t store.Tenant) (TenantColumns, error) {
	var c TenantColumns
	if err := store.ValidateTenantRecord(t); err != nil {
		return c, err
	}
	var err error
	if c.Entitlements, err = ToJSON("entitlements", t.Entitlements); err != nil {
		return c, err
	}
	if c.Quotas, err = ToJSON("quotas", t.Quotas); err != nil {
		return c, err
	}
	c.Metadata, err = ToJSON("metadata", t.Metadata)
	return c, err
}

// DecodeTenant decodes a tenant's JSON columns into t.
func DecodeTenant(t *store.Tenant, entitlements, quotas, metadata []byte) error {
	if err := FromJSON(entitlements, &t.Entitlements); err != nil {
		return err
	}
	if err := FromJSON(quotas, &t.Quotas); err != nil {
		return err
	}
	return FromJSON(metadata, &t.Metadata)
}

// EncodeToken validates tok and encodes its JSON columns.
func EncodeToken(tok store.Token) (scopes, roles string, err error) {
	return encodeTwo(tok.Validate(), "scopes", tok.Scopes, "roles", tok.Roles)
}

// encodeTwo encodes a record's two JSON columns once it is valid (invalid
// is its validation's error).
func encodeTwo(invalid error, field1 string, v1 any, field2 string, v2 any) (string, string, error) {
	if invalid != nil {
		return "", "", invalid
	}
	col1, err := ToJSON(field1, v1)
	if err != nil {
		return "", "", err
	}
	col2, err := ToJSON(field2, v2)
	if err != nil {
		return "", "", err
	}
	return col1, col2, nil
}

// DecodeToken decodes a token's JSON columns into t.
func DecodeToken(t *store.Token, scopes, roles []byte) error {
	if err := FromJSON(scopes, &t.Scopes); err != nil {
		return err
	}
	return FromJSON(roles, &t.Roles)
}

// EncodeAgent validates a and encodes its JSON columns.
func EncodeAgent(a store.Agent) (tools, defaults string, err error) {
	return encodeTwo(a.Validate(), "tools", a.Tools, "defaults", agentSettings{a.Defaults, a.AgentApproval, a.AgentPlacement})
}

// agentSettings is the defaults column: the run defaults and, next to
// them (no schema change), the approval settings.
type agentSettings struct {
	store.AgentDefaults
	store.AgentApproval
	store.AgentPlacement
}

// DecodeAgent decodes an agent's JSON columns into a.
func DecodeAgent(a *store.Agent, tools, defaults []byte) error {
	if err := FromJSON(tools, &a.Tools); err != nil {
		return err
	}
	var set agentSettings
	if err := FromJSON(defaults, &set); err != nil {
		return err
	}
	a.Defaults, a.AgentApproval, a.AgentPlacement = set.AgentDefaults, set.AgentApproval, set.AgentPlacement
	return nil
}

// RunColumns are a run's JSON columns; Output and Error are nil (NULL) when
// the run has none.
type RunColumns struct {
	Input, Tooling, RunOptions, Summary string
	Output, Error                       any
}

// EncodeRun encodes r's JSON columns.
func EncodeRun(r store.Run) (RunColumns, error) {
	var c RunColumns
	var err error
	for _, f := range []struct {
		field string
		dst   *string
		v     any
	}{{"input", &c.Input, r.Input}, {"tooling", &c.Tooling, r.Tooling}, {"run_options", &c.RunOptions, r.RunOptions},
		{"summary", &c.Summary, r.Summary}} {
		if *f.dst, err = ToJSON(f.field, f.v); err != nil {
			return c, err
		}
	}
	c.Output, c.Error, err = EncodeRunResult(r)
	return c, err
}

// EncodeRunResult encodes the nullable output and error columns.
func EncodeRunResult(r store.Run) (output, errBody any, err error) {
	if r.Output != nil {
		if output, err = ToJSON("output", r.Output); err != nil {
			return nil, nil, err
		}
	}
	if r.Error != nil {
		if errBody, err = ToJSON("error", r.Error); err != nil {
			return nil, nil, err
		}
	}
	return output, errBody, nil
}

// DecodeRun decodes a run's JSON columns into r; a nil output or errBody
// (NULL) leaves r.Output or r.Error nil.
func DecodeRun(r *store.Run, input, tooling, runOptions, summary, output, errBody []byte) error {
	for _, f := range []struct {
		b []byte
		v any
	}{{input, &r.Input}, {tooling, &r.Tooling}, {runOptions, &r.RunOptions}, {summary, &r.Summary}} {
		if err := FromJSON(f.b, f.v); err != nil {
			return err
		}
	}
	if output != nil {
		r.Output = new(store.Output)
		if err := FromJSON(output, r.Output); err != nil {
			return err
		}
	}
	if errBody != nil {
		r.Error = new(store.ErrorBody)
		if err := FromJSON(errBody, r.Error); err != nil {
			return err
		}
	}
	return nil
}

// Page cuts a list fetched with limit+1 rows to limit and returns the
// cursor of the next page (the last run id kept), "" when there is none.
func Page(runs []store.Run, limit int) ([]store.Run, string) {
	if len(runs) <= limit {
		return runs, ""
	}
	runs = runs[:limit]
	return runs, runs[limit-1].RunID
}

// NewRun is a validated run admission with its defaults filled.
type NewRun struct {
	Run        store.Run
	FirstEvent store.Event
	// TTL is how long the idempotency key is remembered.
	TTL time.Duration
	// Now is the admission time (UTC, microseconds).
	Now time.Time
	// Audit is p.Audit prepared (PrepareAudit), nil when there is none.
	Audit *AuditRow
	// Columns are the run's JSON columns, encoded before any transaction.
	Columns RunColumns
	// InterruptEvent is p.InterruptEvent (thread runs).
	InterruptEvent store.Event
	// Webhooks are p.Webhooks.
	Webhooks []store.WebhookTarget
}

// PrepareRun validates p and fills CreateRun's defaults: RunID
// ids.New("run_"), Status queued, CreatedAt now, times normalized, an empty
// Context nil, and FirstEvent (sequence 1, type run.created, EventID/Time
// filled) carrying the run's tenant, agent and run ids.
func PrepareRun(p store.CreateRunParams, now func() time.Time) (NewRun, error) {
	if err := p.Validate(); err != nil {
		return NewRun{}, err
	}
	r := p.Run
	if r.RunID == "" {
		r.RunID = ids.New("run_")
	}
	if r.Status == "" {
		r.Status = store.RunQueued
	}
	r.IdempotencyKey = p.IdempotencyKey
	n := NewRun{Now: UTC(now()), TTL: p.IdempotencyTTL, Webhooks: p.Webhooks}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = n.Now
	}
	r.CreatedAt, r.StartedAt, r.CompletedAt = UTC(r.CreatedAt), UTCPtr(r.StartedAt), UTCPtr(r.CompletedAt)
	if len(r.Context) == 0 {
		r.Context = nil
	}
	n.Run = r
	var err error
	if n.Columns, err = EncodeRun(r); err != nil {
		return NewRun{}, err
	}
	ev := p.FirstEvent
	ev.TenantID, ev.AgentID, ev.RunID, ev.Sequence = r.TenantID, r.AgentID, r.RunID, 1
	if ev.Type == "" {
		ev.Type = store.EventRunCreated
	}
	FillEvent(&ev, n.Now)
	n.FirstEvent = ev
	n.InterruptEvent = p.InterruptEvent
	if n.TTL == 0 {
		n.TTL = DefaultIdempotencyTTL
	}
	if p.Audit != nil {
		row, err := PrepareAudit(*p.Audit, now)
		if err != nil {
			return NewRun{}, err
		}
		n.Audit = &row
	}
	return n, nil
}

// IdempotencyConflict is the error for an idempotency key reused with
// another request body; details name the original run.
func IdempotencyConflict(key, runID string) error {
	return errs.E(errs.Conflict, "Idempotency-Key %q was used with a different request body", key).
		WithDetails(map[string]any{"run_id": runID})
}

// FillEvent sets EventID and Time when empty, normalizes Time and turns an
// empty payload into nil.
func FillEvent(e *store.Event, now time.Time) {
	if e.EventID == "" {
		e.EventID = ids.New("evt_")
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = UTC(e.Time)
	if len(e.Payload) == 0 {
		e.Payload = nil
	}
}

// CheckRunChange applies c's fences to the run as stored (its status and
// attempt): a stale ExpectAttempt or a status outside FromStatuses is a
// conflict whose details carry the stored value.
func CheckRunChange(c store.RunChange, status string, attempt int) error {
	if c.ExpectAttempt > 0 && attempt != c.ExpectAttempt {
		return errs.E(errs.Conflict, "run %s was resumed by another executor (attempt %d, not %d)", c.RunID, attempt, c.ExpectAttempt).
			WithDetails(map[string]any{"attempt": attempt})
	}
	if len(c.FromStatuses) > 0 && !slices.Contains(c.FromStatuses, store.RunStatus(status)) {
		want := make([]string, len(c.FromStatuses))
		for i, s := range c.FromStatuses {
			want[i] = string(s)
		}
		return errs.E(errs.Conflict, "run %s is %s, not %s", c.RunID, status, strings.Join(want, " or ")).
			WithDetails(map[string]any{"status": status})
	}
	return nil
}

// SequenceEvents returns c's events ready to append after sequence last:
// tenant and run from c, sequences last+1..., agentID where an event names
// none, and FillEvent's defaults.
func SequenceEvents(c store.RunChange, agentID string, last int64, now time.Time) []store.Event {
	out := make([]store.Event, 0, len(c.Events))
	for _, e := range c.Events {
		last++
		e.TenantID, e.RunID, e.Sequence = c.TenantID, c.RunID, last
		if e.AgentID == "" {
			e.AgentID = agentID
		}
		FillEvent(&e, now)
		out = append(out, e)
	}
	return out
}

// NewReservation validates p and returns the reservation to record.
func NewReservation(p store.ReserveParams) (store.Reservation, error) {
	if err := p.Validate(); err != nil {
		return store.Reservation{}, err
	}
	return store.Reservation{
		ReservationID: ids.New("rsv_"),
		TenantID:      p.TenantID,
		WindowStart:   UTC(p.WindowStart),
		Window:        p.Window,
		Tokens:        p.Tokens,
		CostUSD:       p.CostUSD,
	}, nil
}

// CheckBudget refuses a reservation that would take the window's usage over
// a limit: quota_exceeded with details limit, used, requested, window and
// resource ("tokens" or "cost_usd").
func CheckBudget(p store.ReserveParams, used store.BudgetUsage) error {
	if p.MaxTokens > 0 && used.UsedTokens+p.Tokens > p.MaxTokens {
		return errs.E(errs.QuotaExceeded, "token budget of %d per %s exceeded", p.MaxTokens, p.Window).
			WithDetails(map[string]any{"limit": p.MaxTokens, "used": used.UsedTokens, "requested": p.Tokens,
				"window": p.Window, "resource": "tokens"})
	}
	if p.MaxCostUSD > 0 && used.UsedCostUSD+p.CostUSD > p.MaxCostUSD+CostEpsilon {
		return errs.E(errs.QuotaExceeded, "cost budget of %g USD per %s exceeded", p.MaxCostUSD, p.Window).
			WithDetails(map[string]any{"limit": p.MaxCostUSD, "used": used.UsedCostUSD, "requested": p.CostUSD,
				"window": p.Window, "resource": "cost_usd"})
	}
	return nil
}

// PrepareUsage validates u and fills UsageID (ids.New("usg_")) and Time
// (now()) when empty.
func PrepareUsage(u store.UsageRecord, now func() time.Time) (store.UsageRecord, error) {
	if err := u.Validate(); err != nil {
		return u, err
	}
	if u.UsageID == "" {
		u.UsageID = ids.New("usg_")
	}
	if u.Time.IsZero() {
		u.Time = now()
	}
	return u, nil
}

// PrepareUsages prepares each record (PrepareUsage) into a new slice.
func PrepareUsages(us []store.UsageRecord, now func() time.Time) ([]store.UsageRecord, error) {
	out := make([]store.UsageRecord, len(us))
	for i, u := range us {
		var err error
		if out[i], err = PrepareUsage(u, now); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TenantChanged is the error of a conditional tenant update that lost a
// race with another update.
func TenantChanged(tenantID string) error {
	return errs.E(errs.Conflict, "tenant %s was changed meanwhile; read it again", tenantID)
}

// PrepareKVPut validates a KVPut and returns the value to store (nil is
// stored as empty) and the size it counts toward the tenant's quota.
func PrepareKVPut(tenantID, namespace, key string, value []byte) ([]byte, int64, error) {
	if err := store.ValidateKVPut(tenantID, key); err != nil {
		return nil, 0, err
	}
	if value == nil {
		value = []byte{}
	}
	return value, store.KVEntrySize(namespace, key, value), nil
}

// KVValue is KVGet's answer to a read of v (err already mapped): a value
// stored empty reads back empty, not nil.
func KVValue(v []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// KVQuotaExceeded is the error for a put that would take the tenant's KV
// storage over maxBytes.
func KVQuotaExceeded(maxBytes, used, requested int64) error {
	return errs.E(errs.QuotaExceeded, "storage quota of %d bytes exceeded", maxBytes).
		WithDetails(map[string]any{"limit": maxBytes, "used": used, "requested": requested})
}

// AuditRow is an audit record ready to append. Canonical (set by Chain) is
// what the adapter stores in the record column, once; the legacy map
// columns stay NULL for new rows.
type AuditRow struct {
	Record    store.AuditRecord
	Canonical []byte
}

// PrepareAudit fills AuditID (ids.New("aud_")) and Time (now()) when empty,
// normalizes Time as stores keep it, and refuses maps JSON cannot carry
// (invalid_request naming the field).
func PrepareAudit(r store.AuditRecord, now func() time.Time) (AuditRow, error) {
	if r.AuditID == "" {
		r.AuditID = ids.New("aud_")
	}
	if r.Time.IsZero() {
		r.Time = now()
	}
	r.Time = UTC(r.Time)
	r.Stored = nil
	if _, err := NullableJSON("policy_context", r.PolicyContext); err != nil {
		return AuditRow{}, err
	}
	if _, err := NullableJSON("details", r.Details); err != nil {
		return AuditRow{}, err
	}
	return AuditRow{Record: r}, nil
}

// PrepareAudits prepares each record (PrepareAudit).
func PrepareAudits(rs []store.AuditRecord, now func() time.Time) ([]AuditRow, error) {
	rows := make([]AuditRow, len(rs))
	for i, r := range rs {
		row, err := PrepareAudit(r, now)
		if err != nil {
			return nil, err
		}
		rows[i] = row
	}
	return rows, nil
}

// ChainAll links rows, in order, after the chain's last record.
func ChainAll(rows []AuditRow, lastSeq int64, lastHash string) error {
	for i := range rows {
		if err := rows[i].Chain(lastSeq, lastHash); err != nil {
			return err
		}
		lastSeq, lastHash = rows[i].Record.Seq, rows[i].Record.Hash
	}
	return nil
}

// Chain links the record after the chain's last record: Seq, PrevHash,
// then Canonical (store.CanonicalAudit) and Hash, its SHA-256.
func (row *AuditRow) Chain(lastSeq int64, lastHash string) error {
	r := &row.Record
	r.Seq, r.PrevHash = lastSeq+1, lastHash
	b, err := store.CanonicalAudit(*r)
	if err != nil {
		return errs.Wrap(errs.InvalidRequest, err, "audit record cannot be encoded")
	}
	row.Canonical, r.Hash = b, store.HashCanonical(b)
	r.Stored = &store.StoredAudit{Canonical: b}
	return nil
}

// DecodeAudit completes r, whose scalar columns are already scanned, from
// the stored bytes. For a canonical row (record non-nil) every field comes
// from record, except those with a column of their own, which keep the
// column's value: the chain verifier compares the two (store.StoredAudit),
// so an edit of either is detected, and the record is never shown with
// values that differ from its columns without that showing. Undecodable
// canonical bytes are left to the verifier (their hash no longer matches)
// rather than failing the listing. Legacy rows decode their map columns.
func DecodeAudit(r *store.AuditRecord, record, policyContext, details []byte) error {
	if record != nil {
		cols := *r
		if d, err := store.DecodeCanonical(record); err == nil {
			*r = d
		}
		r.AuditID, r.Seq, r.Time, r.TenantID = cols.AuditID, cols.Seq, cols.Time, cols.TenantID
		r.PrincipalID, r.Action, r.Target, r.Outcome = cols.PrincipalID, cols.Action, cols.Target, cols.Outcome
		r.OnBehalfOf = cols.OnBehalfOf
		r.CorrelationID, r.PrevHash, r.Hash = cols.CorrelationID, cols.PrevHash, cols.Hash
		r.Stored = &store.StoredAudit{Canonical: record}
		return nil
	}
	r.Stored = &store.StoredAudit{PolicyContext: policyContext, Details: details}
	if err := FromJSONNumbers(policyContext, &r.PolicyContext); err != nil {
		return err
	}
	return FromJSONNumbers(details, &r.Details)
}

// Ingested is a replicated event ready to store.
type Ingested struct {
	Event store.Event
	// Body is the event's JSON (the stored column).
	Body string
	// At is when it was ingested (UTC, microseconds).
	At time.Time
}

// EncodeIngested validates e, normalizes its time and encodes it; the
// ingestion time defaults to now().
func EncodeIngested(e store.IngestedEvent, now func() time.Time) (Ingested, error) {
	if err := e.Validate(); err != nil {
		return Ingested{}, err
	}
	ev := e.Event
	ev.Time = UTC(ev.Time)
	body, err := json.Marshal(ev)
	if err != nil {
		return Ingested{}, errs.Field("event", "cannot be encoded: %v", err)
	}
	at := e.IngestedAt
	if at.IsZero() {
		at = now()
	}
	return Ingested{Event: ev, Body: string(body), At: UTC(at)}, nil
}

// DecodeIngested decodes a stored replicated event.
func DecodeIngested(b []byte) (store.Event, error) {
	var e store.Event
	if err := json.Unmarshal(b, &e); err != nil {
		return e, errs.Wrap(errs.Internal, err, "corrupt ingested event")
	}
	e.Time = UTC(e.Time)
	if string(e.Payload) == "null" {
		e.Payload = nil
	}
	return e, nil
}

// Migration is one embedded schema migration, NNNN_name.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations lists dir/NNNN_name.sql of fsys in version order.
func Migrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read embedded migrations")
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, errs.E(errs.Internal, "migration file %q is not named NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(fsys, dir+"/"+name)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "read migration %s", name)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// ArtifactQuotaExceeded is the error for an artifact that would take the
// tenant's artifact bytes over maxBytes.
func ArtifactQuotaExceeded(maxBytes, used, requested int64) error {
	return errs.E(errs.QuotaExceeded, "max_artifact_bytes: storing %d more bytes would exceed the tenant's artifact quota of %d bytes (%d used)",
		requested, maxBytes, used).
		WithDetails(map[string]any{"quota": "max_artifact_bytes", "limit": maxBytes, "used": used, "requested": requested})
}

package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nexixai/agentos/internal/jcs"
)

// CanonicalAudit returns the bytes an audit record is stored as and hashed
// over: the RFC 8785 canonical JSON of every field the record encodes to,
// except "hash" (so PrevHash and Seq are covered, and so is any field added
// to AuditRecord later, with no code here). Time is taken in UTC with
// microsecond precision, as stores keep it. It fails only on values JSON
// cannot carry (NaN, a number beyond a double).
func CanonicalAudit(r AuditRecord) ([]byte, error) {
	r.Hash, r.Stored = "", nil
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("audit record %s: %w", r.AuditID, err)
	}
	b, err := jcs.TransformWithout(raw, "hash")
	if err != nil {
		return nil, fmt.Errorf("audit record %s: %w", r.AuditID, err)
	}
	return b, nil
}

// HashCanonical is the chain hash of a record stored as canonical (the
// output of CanonicalAudit): hex SHA-256 of exactly those bytes.
func HashCanonical(canonical []byte) string {
	return hashBytes(canonical)
}

// DecodeCanonical decodes a record's canonical bytes (numbers in maps kept
// as json.Number, so re-encoding is exact).
func DecodeCanonical(canonical []byte) (AuditRecord, error) {
	var r AuditRecord
	dec := json.NewDecoder(bytes.NewReader(canonical))
	dec.UseNumber()
	err := dec.Decode(&r)
	return r, err
}

// LegacyHashAudit is the hash rule of records written before the
// canonical form (StoredAudit.Canonical nil): SHA-256 over the JSON of r
// with Hash empty, its maps re-encoded by encoding/json. It is kept only to
// verify those records; see LegacyHashAuditEncoded for the rule the old
// writer actually applied.
func LegacyHashAudit(r AuditRecord) string {
	pc, err1 := encodeAuditMap(r.PolicyContext)
	det, err2 := encodeAuditMap(r.Details)
	if err1 != nil || err2 != nil {
		// What hashing the record's JSON gives when it cannot be encoded
		// (stores refuse such records; verify still gets an answer).
		return hashBytes(nil)
	}
	return LegacyHashAuditEncoded(r, pc, det)
}

// LegacyHashAuditEncoded is LegacyHashAudit over the map columns' bytes as
// the old writer stored them (nil, "null" and "{}" all mean empty); the
// maps in r are ignored. The old writer hashed these bytes, which differ
// from a re-encoding when a map held a struct (Go field order), which is
// why legacy chains must be verified with the stored bytes.
func LegacyHashAuditEncoded(r AuditRecord, policyContext, details []byte) string {
	b, _ := json.Marshal(hashedAudit{ // plain data and valid JSON: Marshal cannot fail
		AuditID: r.AuditID, Seq: r.Seq, Time: r.Time.UTC().Truncate(time.Microsecond), TenantID: r.TenantID,
		PrincipalID: r.PrincipalID, OnBehalfOf: r.OnBehalfOf, Action: r.Action, Target: r.Target, Outcome: r.Outcome,
		PolicyContext: nonEmptyObject(policyContext), Details: nonEmptyObject(details),
		CorrelationID: r.CorrelationID, PrevHash: r.PrevHash,
	})
	return hashBytes(b)
}

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// hashedAudit is the legacy record layout with its maps pre-encoded: the
// same fields, order, tags and omitempty rules the record had then.
type hashedAudit struct {
	AuditID       string          `json:"audit_id"`
	Seq           int64           `json:"seq"`
	Time          time.Time       `json:"time"`
	TenantID      string          `json:"tenant_id"`
	PrincipalID   string          `json:"principal_id"`
	OnBehalfOf    string          `json:"on_behalf_of,omitempty"` // omitted when empty: older records hash as before
	Action        string          `json:"action"`
	Target        string          `json:"target"`
	Outcome       string          `json:"outcome"`
	PolicyContext json.RawMessage `json:"policy_context,omitempty"`
	Details       json.RawMessage `json:"details,omitempty"`
	CorrelationID string          `json:"correlation_id"`
	PrevHash      string          `json:"prev_hash"`
	Hash          string          `json:"hash"` // always empty
}

func encodeAuditMap(m map[string]any) ([]byte, error) {
	if len(m) == 0 {
		return nil, nil
	}
	return json.Marshal(m)
}

// nonEmptyObject maps what omitempty omits for a map (nil or empty) to nil.
func nonEmptyObject(b []byte) json.RawMessage {
	if s := string(b); s == "null" || s == "{}" {
		return nil
	}
	return b
}

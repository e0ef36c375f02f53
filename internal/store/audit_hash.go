package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// HashAudit returns the chain hash of r: SHA-256 over the JSON of r with
// Hash empty (which covers PrevHash, the previous record's hash). Adapters
// call it (through HashAuditEncoded) when appending; `agentos audit verify`
// calls it to find a broken link.
func HashAudit(r AuditRecord) string {
	pc, err1 := encodeAuditMap(r.PolicyContext)
	det, err2 := encodeAuditMap(r.Details)
	if err1 != nil || err2 != nil {
		// What hashing the record's JSON gives when it cannot be encoded
		// (stores refuse such records; verify still gets an answer).
		return hashBytes(nil)
	}
	return HashAuditEncoded(r, pc, det)
}

// HashAuditEncoded is HashAudit for a record whose PolicyContext and
// Details are already encoded, exactly as json.Marshal encodes them (nil,
// "null" and "{}" all mean empty); the maps in r are ignored. Adapters encode the maps once, for
// their columns, outside the write transaction, so the writer only hashes.
func HashAuditEncoded(r AuditRecord, policyContext, details []byte) string {
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

// hashedAudit is AuditRecord with its maps pre-encoded: the same fields,
// order, tags and omitempty rules, so it marshals to the same bytes.
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

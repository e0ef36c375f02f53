package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// HashAudit returns the chain hash of r: SHA-256 over the previous record's
// hash and r's content (everything but Hash itself). Adapters call it when
// appending; `agentos audit verify` calls it to find a broken link.
func HashAudit(r AuditRecord) string {
	r.Hash = ""
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	b, _ := json.Marshal(r) // fields are plain data; Marshal cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

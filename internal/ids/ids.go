// Package ids makes the prefixed, globally unique identifiers of CONTRACT §2
// (a prefix such as "run_" followed by a ULID).
package ids

import (
	"crypto/rand"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

var (
	mu      sync.Mutex
	entropy = ulid.Monotonic(rand.Reader, 0)
)

// New returns prefix followed by a new lower-case ULID, e.g. New("run_").
// IDs made by one process sort by creation time.
func New(prefix string) string {
	mu.Lock()
	id := ulid.MustNew(ulid.Timestamp(time.Now()), entropy)
	mu.Unlock()
	return prefix + strings.ToLower(id.String())
}

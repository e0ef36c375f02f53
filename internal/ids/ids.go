// Package ids makes the prefixed, globally unique identifiers of CONTRACT §2
// (a prefix such as "run_" followed by a ULID).
package ids

import (
	"crypto/rand"
	"crypto/sha256"
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

// Derived returns prefix followed by a ULID-shaped id made from a hash of
// key: the same key always gives the same id, so a retried request that
// creates an object under it finds the one its first attempt made. Use it
// only where the key is already unique in the object's scope.
func Derived(prefix, key string) string {
	sum := sha256.Sum256([]byte(key))
	var id ulid.ULID
	copy(id[:], sum[:len(id)])
	return prefix + strings.ToLower(id.String())
}

// Package blob is the artifact store's port: named byte streams (files a
// tool or a worker produced) kept outside the database.
//
// Adapters: blob/fsblob (the embedded default: files under the node's data
// directory) and blob/s3blob (any S3-compatible object store, for replicas
// and workers on several machines). blob/blobtest is the conformance suite
// both run.
//
// Stability: the port is small on purpose (workers use it too). Put takes
// a params struct so that a field can be added without breaking an
// adapter; the other methods take a key.
//
// # Guarantees
//
//   - Put streams: it never holds a whole blob in memory. It computes the
//     blob's size and SHA-256 while writing and returns them.
//   - Put is atomic: a reader sees the old blob or the whole new one, never
//     part of one. A Put that fails (a body that errors, a body over
//     MaxBytes, a canceled context) leaves the key as it was.
//   - Keys are data, never paths: ValidKey refuses what could escape the
//     store's root or mean different things to different backends.
//   - A missing key is errs.ErrNotFound (Get, Stat); Delete of a missing key
//     is not an error.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/errs"
)

// DefaultContentType is the content type of a blob put without one.
const DefaultContentType = "application/octet-stream"

// Limits on keys and content types.
const (
	MaxKeyLen         = 512
	MaxContentTypeLen = 255
)

// Store is the whole port; an adapter implements all of it. Safe for
// concurrent use.
type Store interface {
	// Put writes p.Body under p.Key, replacing any blob there, and returns
	// what was stored. invalid_request for a bad key or content type, or a
	// body longer than p.MaxBytes (nothing is then stored).
	Put(ctx context.Context, p PutParams) (Info, error)
	// Get opens the blob for reading; the caller closes it. ErrNotFound if
	// absent.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// Stat describes the blob. ErrNotFound if absent.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the blob; a missing one is not an error.
	Delete(ctx context.Context, key string) error
	// List describes every blob whose key starts with prefix, ordered by
	// key. An empty prefix lists everything.
	List(ctx context.Context, prefix string) ([]Info, error)
}

// PutParams is one write.
type PutParams struct {
	Key  string
	Body io.Reader
	// ContentType is stored with the blob; default DefaultContentType.
	ContentType string
	// MaxBytes, if > 0, refuses (invalid_request, nothing stored) a body
	// longer than it, without reading much past it.
	MaxBytes int64
}

// Info describes a stored blob.
type Info struct {
	Key         string
	Size        int64
	SHA256      string // lower-case hex
	ContentType string
	ModTime     time.Time
}

// ValidKey checks a key: 1 to MaxKeyLen bytes of letters, digits and
// "._-/", made of "/"-separated segments none of which is empty, "." or
// "..". So a key never names a path outside a store's root, and means the
// same on a filesystem and in an S3 bucket.
func ValidKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return errs.Field("key", "must be 1 to %d bytes", MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-/", c) >= 0 {
			continue
		}
		return errs.Field("key", "may hold only letters, digits and ._-/ (got %q)", c)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return errs.Field("key", "segments between slashes must not be empty, \".\" or \"..\"")
		}
	}
	return nil
}

// ContentTypeOf returns ct, or DefaultContentType when empty, after checking
// it is short and free of control characters.
func ContentTypeOf(ct string) (string, error) {
	ct = strings.TrimSpace(ct)
	if ct == "" {
		return DefaultContentType, nil
	}
	if len(ct) > MaxContentTypeLen {
		return "", errs.Field("content_type", "at most %d bytes", MaxContentTypeLen)
	}
	for i := 0; i < len(ct); i++ {
		if ct[i] < 0x20 || ct[i] == 0x7f {
			return "", errs.Field("content_type", "must not contain control characters")
		}
	}
	return ct, nil
}

// TooLarge is the error of a body longer than max bytes.
func TooLarge(max int64) error {
	return errs.Field("body", "is longer than %d bytes", max).WithDetails(map[string]any{"field": "body", "max_bytes": max})
}

// Copy copies body to w, computing its size and SHA-256 on the way; with
// max > 0 a body longer than max is TooLarge (at most max+1 bytes are
// read). It stops with ctx's error once ctx is done. Adapters use it to
// hash what they write.
func Copy(ctx context.Context, w io.Writer, body io.Reader, max int64) (size int64, sum string, err error) {
	h := sha256.New()
	r := body
	if max > 0 {
		r = io.LimitReader(body, max+1)
	}
	buf := make([]byte, 64<<10)
	for {
		if err := ctx.Err(); err != nil {
			return size, "", errs.FromContext(err, "blob write")
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			size += int64(n)
			if max > 0 && size > max {
				return size, "", TooLarge(max)
			}
			h.Write(buf[:n])
			if _, err := w.Write(buf[:n]); err != nil {
				return size, "", err
			}
		}
		if rerr == io.EOF {
			return size, hex.EncodeToString(h.Sum(nil)), nil
		}
		if rerr != nil {
			return size, "", rerr
		}
	}
}

// Package fsblob is the blob port on a local filesystem: the embedded
// default, one file per blob under a root directory (a node's
// $AGENTOS_DATA_DIR/artifacts).
//
// Layout: root/objects/<key> holds the blob, root/tmp/ holds writes in
// progress. Each blob file starts with a fixed-size header (headerSize
// bytes: a magic line and a JSON object padded with spaces) carrying the
// size, SHA-256 and content type, so one rename publishes a blob and its
// description together: a write goes to a temp file, its header is filled
// in once the body is hashed, the file is synced, then renamed into place.
package fsblob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nexixai/agentos/internal/blob"
	"github.com/nexixai/agentos/internal/errs"
)

const (
	magic      = "AGENTOS-BLOB-1\n"
	headerSize = 1024
)

// header is what a blob file starts with (after magic).
type header struct {
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"content_type"`
	Written     time.Time `json:"written"`
}

// Store keeps blobs under a root directory.
type Store struct {
	root string
	now  func() time.Time
}

var _ blob.Store = (*Store)(nil)

// Open returns a store rooted at dir, creating it (0700) if needed.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "objects"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("artifact store %s: %w", dir, err)
		}
	}
	return &Store{root: dir, now: time.Now}, nil
}

func (s *Store) path(key string) string {
	return filepath.Join(s.root, "objects", filepath.FromSlash(key))
}

// Put writes the blob to a temp file, hashing it, then renames it into
// place (see the package comment).
func (s *Store) Put(ctx context.Context, p blob.PutParams) (blob.Info, error) {
	if err := blob.ValidKey(p.Key); err != nil {
		return blob.Info{}, err
	}
	ct, err := blob.ContentTypeOf(p.ContentType)
	if err != nil {
		return blob.Info{}, err
	}
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "put-*")
	if err != nil {
		return blob.Info{}, s.internal(err)
	}
	tmp := f.Name()
	published := false
	defer func() {
		if !published {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(make([]byte, headerSize)); err != nil {
		return blob.Info{}, s.internal(err)
	}
	size, sum, err := blob.Copy(ctx, f, p.Body, p.MaxBytes)
	if err != nil {
		var e *errs.Error
		if errors.As(err, &e) {
			return blob.Info{}, err
		}
		return blob.Info{}, errs.Wrap(errs.InvalidRequest, err, "body: could not be read")
	}
	h := header{Size: size, SHA256: sum, ContentType: ct, Written: s.now().UTC().Truncate(time.Microsecond)}
	hb, err := encodeHeader(h)
	if err != nil {
		return blob.Info{}, err
	}
	if _, err := f.WriteAt(hb, 0); err != nil {
		return blob.Info{}, s.internal(err)
	}
	if err := f.Sync(); err != nil {
		return blob.Info{}, s.internal(err)
	}
	if err := f.Close(); err != nil {
		return blob.Info{}, s.internal(err)
	}
	dst := s.path(p.Key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return blob.Info{}, keyConflict(p.Key, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return blob.Info{}, keyConflict(p.Key, err)
	}
	published = true
	return blob.Info{Key: p.Key, Size: size, SHA256: sum, ContentType: ct, ModTime: h.Written}, nil
}

// keyConflict reports a key that cannot be written because a prefix of it
// is a blob ("a" exists, "a/b" is put) or it is a prefix of others.
func keyConflict(key string, err error) error {
	return errs.Wrap(errs.Conflict, err, "key %q: clashes with another blob's key (one is a directory of the other)", key)
}

func encodeHeader(h header) ([]byte, error) {
	j, err := json.Marshal(h)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "blob header")
	}
	b := append([]byte(magic), j...)
	if len(b) > headerSize-1 {
		return nil, errs.E(errs.Internal, "blob header is %d bytes, more than %d", len(b), headerSize-1)
	}
	b = append(b, bytes.Repeat([]byte(" "), headerSize-1-len(b))...)
	return append(b, '\n'), nil
}

// readHeader reads and checks the header at the start of f.
func readHeader(f io.Reader) (header, error) {
	b := make([]byte, headerSize)
	if _, err := io.ReadFull(f, b); err != nil {
		return header{}, err
	}
	if !bytes.HasPrefix(b, []byte(magic)) {
		return header{}, errors.New("not a blob file (bad magic)")
	}
	var h header
	if err := json.Unmarshal(bytes.TrimSpace(b[len(magic):]), &h); err != nil {
		return header{}, fmt.Errorf("blob header: %w", err)
	}
	return h, nil
}

// open opens a key's file and reads its header; ErrNotFound if absent.
func (s *Store) open(key string) (*os.File, blob.Info, error) {
	if err := blob.ValidKey(key); err != nil {
		return nil, blob.Info{}, err
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, blob.Info{}, errs.E(errs.NotFound, "blob %q not found", key)
		}
		return nil, blob.Info{}, s.internal(err)
	}
	st, err := f.Stat()
	if err == nil && st.IsDir() {
		_ = f.Close()
		return nil, blob.Info{}, errs.E(errs.NotFound, "blob %q not found", key)
	}
	h, err := readHeader(f)
	if err != nil {
		_ = f.Close()
		return nil, blob.Info{}, s.internal(fmt.Errorf("%s: %w", key, err))
	}
	return f, blob.Info{Key: key, Size: h.Size, SHA256: h.SHA256, ContentType: h.ContentType, ModTime: h.Written}, nil
}

// Get opens the blob; the reader yields exactly its Size bytes.
func (s *Store) Get(_ context.Context, key string) (io.ReadCloser, blob.Info, error) {
	f, info, err := s.open(key)
	if err != nil {
		return nil, blob.Info{}, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, info.Size), f}, info, nil
}

// Stat reads the blob's header.
func (s *Store) Stat(_ context.Context, key string) (blob.Info, error) {
	f, info, err := s.open(key)
	if err != nil {
		return blob.Info{}, err
	}
	_ = f.Close()
	return info, nil
}

// Delete removes the blob file, then the directories it leaves empty.
func (s *Store) Delete(_ context.Context, key string) error {
	if err := blob.ValidKey(key); err != nil {
		return err
	}
	p := s.path(key)
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return nil // a prefix of other keys, not a blob
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return s.internal(err)
	}
	objects := filepath.Join(s.root, "objects")
	for d := filepath.Dir(p); d != objects && strings.HasPrefix(d, objects); d = filepath.Dir(d) {
		if os.Remove(d) != nil { // not empty (or raced with a Put): stop
			break
		}
	}
	return nil
}

// List walks the directory holding prefix's last full segment.
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	objects := filepath.Join(s.root, "objects")
	start := objects
	if i := strings.LastIndexByte(prefix, '/'); i > 0 {
		if blob.ValidKey(prefix[:i]) != nil {
			return []blob.Info{}, nil // no valid key has this prefix
		}
		start = s.path(prefix[:i])
	}
	var keys []string
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return ctx.Err()
		}
		rel, err := filepath.Rel(objects, path)
		if err != nil {
			return err
		}
		if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		if e := errs.FromContext(ctx.Err(), "blob list"); e != nil {
			return nil, e
		}
		return nil, s.internal(err)
	}
	sort.Strings(keys)
	out := make([]blob.Info, 0, len(keys))
	for _, k := range keys {
		info, err := s.Stat(ctx, k)
		if errors.Is(err, errs.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

func (s *Store) internal(err error) error {
	return errs.Wrap(errs.Internal, err, "artifact store")
}

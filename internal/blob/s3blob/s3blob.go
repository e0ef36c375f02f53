// Package s3blob is the blob port on an S3-compatible object store
// (AWS S3, SeaweedFS, MinIO, Ceph RGW...), through minio-go with a
// transport from internal/outbound.
//
// A blob is one object, named Config.Prefix + key, with its content type
// and its SHA-256 (user metadata x-amz-meta-sha256). The hash must be known
// before the upload starts (it travels in the request's headers), so Put
// first spools the body to a temp file while hashing it, then uploads the
// file; S3 publishes an object only once its upload completes, which
// makes Put atomic.
package s3blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nexixai/agentos/internal/blob"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/outbound"
)

// metaSHA256 is the user metadata key holding a blob's SHA-256.
const metaSHA256 = "Sha256"

// Config says where the bucket is.
type Config struct {
	// Endpoint is the server's URL: http(s)://host[:port]. Required.
	Endpoint string
	// Bucket is the bucket's name. Required; created at Open if missing.
	Bucket string
	// Region is the bucket's region; default us-east-1.
	Region string
	// AccessKey and SecretKey are the S3 credentials. Required.
	AccessKey string
	SecretKey string `json:"-"`
	// Prefix is put before every key, so that several nodes or uses can
	// share a bucket; default none.
	Prefix string
	// SpoolDir holds bodies being hashed before their upload; default the
	// system temp directory.
	SpoolDir string
	// Timeouts bound connecting and waiting for response headers; the zero
	// value takes internal/outbound's defaults.
	Timeouts outbound.Timeouts
}

// Store keeps blobs in one bucket.
type Store struct {
	cfg    Config
	client *minio.Client
}

var _ blob.Store = (*Store)(nil)

// Open connects to the bucket, creating it if it does not exist.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("artifact store: S3 endpoint %q: want http(s)://host[:port]", cfg.Endpoint)
	}
	if cfg.Bucket == "" || cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("artifact store: S3 bucket, access key and secret key are required")
	}
	if cfg.Prefix != "" && blob.ValidKey(strings.TrimSuffix(cfg.Prefix, "/")) != nil {
		return nil, fmt.Errorf("artifact store: S3 prefix %q: want letters, digits and ._-/ segments", cfg.Prefix)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       u.Scheme == "https",
		Transport:    outbound.Transport(cfg.Timeouts, nil),
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fmt.Errorf("artifact store: %w", err)
	}
	s := &Store{cfg: cfg, client: client}
	exists, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("artifact store: bucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if !exists {
		err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
		if err != nil && minio.ToErrorResponse(err).Code != minio.BucketAlreadyOwnedByYou {
			return nil, fmt.Errorf("artifact store: create bucket %s: %w", cfg.Bucket, err)
		}
	}
	return s, nil
}

func (s *Store) object(key string) string { return s.cfg.Prefix + key }

// Put spools and hashes the body, then uploads it (see the package comment).
func (s *Store) Put(ctx context.Context, p blob.PutParams) (blob.Info, error) {
	if err := blob.ValidKey(p.Key); err != nil {
		return blob.Info{}, err
	}
	ct, err := blob.ContentTypeOf(p.ContentType)
	if err != nil {
		return blob.Info{}, err
	}
	f, err := os.CreateTemp(s.cfg.SpoolDir, "agentos-blob-*")
	if err != nil {
		return blob.Info{}, errs.Wrap(errs.Internal, err, "artifact store spool")
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	size, sum, err := blob.Copy(ctx, f, p.Body, p.MaxBytes)
	if err != nil {
		var e *errs.Error
		if errors.As(err, &e) {
			return blob.Info{}, err
		}
		return blob.Info{}, errs.Wrap(errs.InvalidRequest, err, "body: could not be read")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return blob.Info{}, errs.Wrap(errs.Internal, err, "artifact store spool")
	}
	up, err := s.client.PutObject(ctx, s.cfg.Bucket, s.object(p.Key), f, size, minio.PutObjectOptions{
		ContentType:  ct,
		UserMetadata: map[string]string{metaSHA256: sum},
	})
	if err != nil {
		return blob.Info{}, s.mapErr(ctx, p.Key, err)
	}
	if up.Size != size {
		return blob.Info{}, errs.E(errs.Internal, "artifact store: %s was uploaded as %d bytes, not %d", p.Key, up.Size, size)
	}
	// What was written (a HEAD now could already see a concurrent Put's).
	mod := up.LastModified
	if mod.IsZero() {
		mod = time.Now()
	}
	return blob.Info{Key: p.Key, Size: size, SHA256: sum, ContentType: ct, ModTime: mod.UTC().Truncate(time.Millisecond)}, nil
}

// Get streams the object; the first read's error surfaces at Stat.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	if err := blob.ValidKey(key); err != nil {
		return nil, blob.Info{}, err
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, s.object(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, blob.Info{}, s.mapErr(ctx, key, err)
	}
	oi, err := obj.Stat()
	if err != nil {
		_ = obj.Close()
		return nil, blob.Info{}, s.mapErr(ctx, key, err)
	}
	return obj, s.info(key, oi), nil
}

// Stat is a HEAD of the object.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := blob.ValidKey(key); err != nil {
		return blob.Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.cfg.Bucket, s.object(key), minio.StatObjectOptions{})
	if err != nil {
		return blob.Info{}, s.mapErr(ctx, key, err)
	}
	return s.info(key, oi), nil
}

func (s *Store) info(key string, oi minio.ObjectInfo) blob.Info {
	return blob.Info{Key: key, Size: oi.Size, SHA256: oi.UserMetadata[metaSHA256],
		ContentType: oi.ContentType, ModTime: oi.LastModified.UTC().Truncate(time.Millisecond)}
}

// Delete removes the object; S3 answers a missing one with success.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidKey(key); err != nil {
		return err
	}
	err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.object(key), minio.RemoveObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		return s.mapErr(ctx, key, err)
	}
	return nil
}

// List pages through the bucket's keys under prefix (S3 lists in key
// order) and describes each (a HEAD per blob: listings carry no user
// metadata). Objects whose names are not valid keys are skipped.
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	out := []blob.Info{}
	for oi := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.object(prefix), Recursive: true}) {
		if oi.Err != nil {
			return nil, s.mapErr(ctx, prefix, oi.Err)
		}
		key := strings.TrimPrefix(oi.Key, s.cfg.Prefix)
		if blob.ValidKey(key) != nil {
			continue
		}
		info, err := s.Stat(ctx, key)
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

// mapErr turns a minio-go error into the port's: a missing object is
// not_found, the caller's context its timeout or canceled, anything else
// dependency_unavailable (the object store, not the request, failed).
func (s *Store) mapErr(ctx context.Context, key string, err error) error {
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey, "NotFound":
		return errs.Wrap(errs.NotFound, err, "blob %q not found", key)
	}
	return outbound.Error(ctx, "S3 object store "+s.cfg.Endpoint, err)
}

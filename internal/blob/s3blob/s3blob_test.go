package s3blob_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/blob"
	"github.com/nexixai/agentos/internal/blob/blobtest"
	"github.com/nexixai/agentos/internal/blob/s3blob"
	"github.com/nexixai/agentos/internal/errs"
)

// TestConformance runs the blob suite against a real S3-compatible server
// (SeaweedFS, started by the test; AGENTOS_TEST_S3_SERVER names its
// binary). Each subtest gets its own key prefix in one bucket.
func TestConformance(t *testing.T) {
	srv := blobtest.StartS3(t)
	var n atomic.Int64
	blobtest.Run(t, func(t *testing.T) blob.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := s3blob.Open(ctx, s3blob.Config{Endpoint: srv.Endpoint, Bucket: "agentos-conformance",
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Prefix: fmt.Sprintf("fixture-%d/", n.Add(1)),
			SpoolDir: t.TempDir()})
		require.NoError(t, err)
		return s
	})
}

// TestWrongCredentialsFail: the server checks signatures, so a store
// opened with a wrong secret cannot reach the bucket.
func TestWrongCredentialsFail(t *testing.T) {
	srv := blobtest.StartS3(t)
	ctx := context.Background()
	_, err := s3blob.Open(ctx, s3blob.Config{Endpoint: srv.Endpoint, Bucket: "agentos-creds",
		AccessKey: srv.AccessKey, SecretKey: "wrong-secret"})
	require.Error(t, err)
}

// TestUnreachableIsDependencyUnavailable: a store whose server went away
// answers dependency_unavailable, not internal_error or not_found.
func TestUnreachableIsDependencyUnavailable(t *testing.T) {
	srv := blobtest.StartS3(t)
	ctx := context.Background()
	s, err := s3blob.Open(ctx, s3blob.Config{Endpoint: srv.Endpoint, Bucket: "agentos-down",
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, SpoolDir: t.TempDir()})
	require.NoError(t, err)
	_, err = s.Put(ctx, blob.PutParams{Key: "k", Body: strings.NewReader("v")})
	require.NoError(t, err)
	blobtest.StopS3(t, srv)
	_, err = s.Stat(ctx, "k")
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "%v", err)
}

func TestOpenRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []s3blob.Config{
		{Endpoint: "127.0.0.1:9000", Bucket: "b", AccessKey: "a", SecretKey: "s"},
		{Endpoint: "ftp://h", Bucket: "b", AccessKey: "a", SecretKey: "s"},
		{Endpoint: "http://h/path", Bucket: "b", AccessKey: "a", SecretKey: "s"},
		{Endpoint: "http://h", AccessKey: "a", SecretKey: "s"},
		{Endpoint: "http://h", Bucket: "b", AccessKey: "a"},
		{Endpoint: "http://h", Bucket: "b", AccessKey: "a", SecretKey: "s", Prefix: "../x"},
	} {
		_, err := s3blob.Open(context.Background(), c)
		require.Error(t, err, "%+v", c)
	}
}

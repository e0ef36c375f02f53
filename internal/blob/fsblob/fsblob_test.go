package fsblob_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/blob"
	"github.com/nexixai/agentos/internal/blob/blobtest"
	"github.com/nexixai/agentos/internal/blob/fsblob"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := fsblob.Open(filepath.Join(t.TempDir(), "artifacts"))
		require.NoError(t, err)
		return s
	})
}

// TestFailedPutsLeaveNoTempFiles: a write that fails removes its temp
// file, so failures cannot fill the disk.
func TestFailedPutsLeaveNoTempFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := fsblob.Open(dir)
	require.NoError(t, err)
	_, err = s.Put(t.Context(), blob.PutParams{Key: "k", Body: bigReader{}, MaxBytes: 10})
	require.Error(t, err)
	left, err := os.ReadDir(filepath.Join(dir, "tmp"))
	require.NoError(t, err)
	require.Empty(t, left)
}

type bigReader struct{}

func (bigReader) Read(b []byte) (int, error) { return len(b), nil }

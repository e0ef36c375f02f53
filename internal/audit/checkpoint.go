package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nexixai/agentos/internal/jcs"
	"github.com/nexixai/agentos/internal/store"
)

// CheckpointFileName is the checkpoint file under the data directory (the
// default of config.AuditCheckpointFile).
const CheckpointFileName = "audit-checkpoints.jsonl"

// checkpointType names what a checkpoint signature covers, so the node
// key's signature over these bytes cannot be taken for any other message.
const checkpointType = "agentos.audit.checkpoint.v1"

// Checkpoint states that the audit chain had, at Time, Seq records and the
// record Seq had hash HeadHash, signed with the node's Ed25519 key. Kept
// outside the store, it makes a rewritten or truncated chain detectable by
// someone who can write to the database but not to the checkpoint file
// (or the operator's exported copy).
type Checkpoint struct {
	Seq      int64     `json:"seq"`
	HeadHash string    `json:"head_hash"`
	Time     time.Time `json:"time"`
	// KeyID is the node key's id (auth.NodeSigner.KeyID).
	KeyID string `json:"key_id"`
	// Signature is the Ed25519 signature (base64url, no padding) over the
	// RFC 8785 canonical JSON of {type, seq, head_hash, time, key_id}.
	Signature string `json:"signature"`
}

// Signer signs checkpoints (auth.NodeSigner).
type Signer interface {
	KeyID() string
	SignBytes(msg []byte) []byte
}

func (c Checkpoint) signedBytes() []byte {
	b, err := jcs.Marshal(map[string]any{
		"type": checkpointType, "seq": c.Seq, "head_hash": c.HeadHash,
		"time": c.Time.UTC().Format(time.RFC3339Nano), "key_id": c.KeyID,
	})
	if err != nil { // plain strings and a small integer: cannot happen
		panic(err)
	}
	return b
}

// Sign sets KeyID and Signature.
func (c Checkpoint) Sign(s Signer) Checkpoint {
	c.Time = c.Time.UTC()
	c.KeyID = s.KeyID()
	c.Signature = base64.RawURLEncoding.EncodeToString(s.SignBytes(c.signedBytes()))
	return c
}

// VerifySignature checks the signature with the node's public key.
func (c Checkpoint) VerifySignature(pub ed25519.PublicKey) error {
	sig, err := base64.RawURLEncoding.DecodeString(c.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errors.New("signature is not a base64url Ed25519 signature")
	}
	if !ed25519.Verify(pub, c.signedBytes(), sig) {
		return fmt.Errorf("signature does not verify with the node key (checkpoint key_id %s)", c.KeyID)
	}
	return nil
}

// AppendCheckpoint appends c as one JSON line to the file at path
// (created 0600, directories 0700) and syncs it.
func AppendCheckpoint(path string, c Checkpoint) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("audit checkpoint file: %w", err)
	}
	line, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit checkpoint file: %w", err)
	}
	// One write of a short line: concurrent appenders (the node and the
	// CLI) never interleave.
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("audit checkpoint file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit checkpoint file %s: %w", path, err)
	}
	return f.Close()
}

// FileCheckpoint is a checkpoint read from a file, with where it was read.
type FileCheckpoint struct {
	Checkpoint
	File string
	Line int
}

// Where names the checkpoint for messages.
func (c FileCheckpoint) Where() string {
	return fmt.Sprintf("checkpoint at seq %d (time %s, %s line %d)", c.Seq, c.Time.UTC().Format(time.RFC3339), c.File, c.Line)
}

// ReadCheckpoints reads the checkpoints of a file: JSON lines, or one JSON
// object as `agentos audit checkpoint --export` prints it. A missing file
// has none (missing is false only when the file exists). A line that is not
// a checkpoint is an error naming it.
func ReadCheckpoints(path string) (cps []FileCheckpoint, exists bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	for n := 1; ; n++ {
		var c Checkpoint
		err := dec.Decode(&c)
		if errors.Is(err, io.EOF) {
			return cps, true, nil
		}
		if err != nil {
			return nil, true, fmt.Errorf("%s: checkpoint %d: %w", path, n, err)
		}
		if c.Seq < 0 || c.Signature == "" || c.Time.IsZero() {
			return nil, true, fmt.Errorf("%s: checkpoint %d: seq, time and signature are required", path, n)
		}
		cps = append(cps, FileCheckpoint{Checkpoint: c, File: path, Line: n})
	}
}

// LastCheckpoint returns the file's last checkpoint (ok false when none).
func LastCheckpoint(path string) (FileCheckpoint, bool, error) {
	cps, _, err := ReadCheckpoints(path)
	if err != nil || len(cps) == 0 {
		return FileCheckpoint{}, false, err
	}
	return cps[len(cps)-1], true, nil
}

// Checkpointer writes signed checkpoints of the chain head to a file.
type Checkpointer struct {
	Log    store.AuditLog
	Path   string
	Signer Signer
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
}

// Write verifies the records appended since the file's last checkpoint
// (continuing the chain from that checkpoint's seq and head hash, so a
// chain rewritten or truncated since is refused, not signed) and appends a
// checkpoint of the current head. When the head has not moved since the
// last checkpoint, nothing is written unless force is set; wrote says
// whether a checkpoint was appended.
func (cp *Checkpointer) Write(ctx context.Context, force bool) (c Checkpoint, wrote bool, err error) {
	last, have, err := LastCheckpoint(cp.Path)
	if err != nil {
		return Checkpoint{}, false, err
	}
	var chain Chain
	after := int64(0)
	if have && last.Seq > 0 {
		// Re-read the checkpointed record: it must still be there with
		// the hash that was signed.
		after = last.Seq - 1
	}
	headSeq, headHash := int64(0), ""
	for {
		page, err := cp.Log.ListAudit(ctx, store.ListAuditParams{AfterSeq: after, Limit: 1000})
		if err != nil {
			return Checkpoint{}, false, fmt.Errorf("read audit log: %w", err)
		}
		for _, r := range page {
			if have && last.Seq > 0 && r.Seq == last.Seq && r.Hash != last.HeadHash {
				return Checkpoint{}, false, fmt.Errorf("audit chain rewritten: record %d has hash %s, the last %s signed %s",
					r.Seq, short(r.Hash), last.Where(), short(last.HeadHash))
			}
			if !chain.started && r.Seq != after+1 {
				return Checkpoint{}, false, fmt.Errorf("audit chain broken at seq %d: records before it are missing", r.Seq)
			}
			if ok, reason := chain.Next(r); !ok {
				return Checkpoint{}, false, fmt.Errorf("audit chain broken at seq %d (%s): %s", r.Seq, r.AuditID, reason)
			}
			headSeq, headHash = r.Seq, r.Hash
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].Seq
	}
	if have && headSeq < last.Seq {
		return Checkpoint{}, false, fmt.Errorf("audit chain truncated: record %d, the head of the last %s, is missing", last.Seq, last.Where())
	}
	if have && headSeq == last.Seq && !force {
		return last.Checkpoint, false, nil
	}
	now := time.Now
	if cp.Now != nil {
		now = cp.Now
	}
	c = Checkpoint{Seq: headSeq, HeadHash: headHash, Time: now().UTC()}.Sign(cp.Signer)
	if err := AppendCheckpoint(cp.Path, c); err != nil {
		return Checkpoint{}, false, err
	}
	return c, true, nil
}

// Run writes a checkpoint every interval until ctx ends, and once more
// when it ends (so a clean stop leaves the final head signed). Failures
// are logged: a chain that does not extend the last checkpoint is logged
// at error level on every tick until an operator looks.
func (cp *Checkpointer) Run(ctx context.Context, interval time.Duration) {
	logger := cp.Logger
	if logger == nil {
		logger = slog.Default()
	}
	tick := func(ctx context.Context) {
		c, wrote, err := cp.Write(ctx, false)
		if err != nil {
			logger.ErrorContext(ctx, "audit checkpoint not written", "err", err, "file", cp.Path)
			return
		}
		if wrote {
			logger.DebugContext(ctx, "audit checkpoint written", "seq", c.Seq, "file", cp.Path)
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			tick(final)
			cancel()
			return
		case <-t.C:
			tick(ctx)
		}
	}
}

// CheckpointProblem is a checkpoint the chain does not satisfy.
type CheckpointProblem struct {
	Checkpoint FileCheckpoint
	// Kind: "signature", "rewritten" or "truncated".
	Kind    string
	Message string
}

// VerifyCheckpoints checks each checkpoint against a verified chain (res
// from VerifyLogAt with the checkpoints' seqs): its signature with pub,
// that the chain reaches its seq (else the tail was truncated) and that the
// record there still has the signed hash (else the chain was rewritten).
// Checkpoints beyond a break (res.OK false) are only signature-checked.
func VerifyCheckpoints(res Result, cps []FileCheckpoint, pub ed25519.PublicKey) []CheckpointProblem {
	var out []CheckpointProblem
	for _, c := range cps {
		if err := c.VerifySignature(pub); err != nil {
			out = append(out, CheckpointProblem{c, "signature", fmt.Sprintf("%s: %v", c.Where(), err)})
			continue
		}
		if !res.OK && c.Seq >= res.BrokenSeq {
			continue
		}
		if c.Seq == 0 {
			continue
		}
		if res.OK && c.Seq > res.HeadSeq {
			out = append(out, CheckpointProblem{c, "truncated", fmt.Sprintf("audit chain truncated: it ends at seq %d, but the %s signed a chain of %d records", res.HeadSeq, c.Where(), c.Seq)})
			continue
		}
		if got := res.Hashes[c.Seq]; got != c.HeadHash {
			out = append(out, CheckpointProblem{c, "rewritten", fmt.Sprintf("audit chain rewritten: record %d has hash %s, but the %s signed %s", c.Seq, short(got), c.Where(), short(c.HeadHash))})
		}
	}
	return out
}

package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/node"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

// Exit codes of `agentos audit verify`.
const (
	exitAuditBroken     = 1 // a record does not verify (content, link or sequence)
	exitAuditCheckpoint = 3 // the chain verifies, but contradicts a signed checkpoint (or one is not validly signed)
)

// newAuditCmd is `agentos audit`, the audit trail's operator commands.
func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Inspect the append-only, hash-chained audit log",
	}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditCheckpointCmd())
	return cmd
}

// openAuditStore opens the node's store for an audit command (never
// creating one).
func openAuditStore(ctx context.Context, cfg config.Config, op string) (*node.Backend, error) {
	if !postgres.IsURL(cfg.StoreURL) {
		path, err := sqlite.ParseURL(cfg.StoreURL)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: no store at %s (set --data-dir or --store)", op, path)
		}
	}
	db, err := node.OpenBackend(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: open %s: %w", op, cfg.StoreURL, err)
	}
	return db, nil
}

func newAuditVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit log's hash chain and its signed checkpoints",
		Long: `verify reads every audit record of the node's store in order and checks that
each record's stored bytes match its hash and its columns match those bytes,
that each record holds the previous record's hash, and that sequence numbers
have no gaps. Then it checks every signed checkpoint (the node's checkpoint
file, AGENTOS_AUDIT_CHECKPOINT_FILE, and any --checkpoint FILE, such as one
exported with "agentos audit checkpoint --export"): its signature with the
node key, that the chain still has the signed head hash at the checkpoint's
seq (else the chain was rewritten) and that the chain is not shorter (else
its tail was truncated).

It prints "audit chain ok: N records" and a checkpoint summary, or names the
broken record ("audit chain broken at seq N (aud_…): reason") or the
checkpoint the chain contradicts. Exit status: 0 intact; 1 a record is
broken; 3 the records verify but contradict a checkpoint, or a checkpoint is
not validly signed.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	extra := cmd.Flags().StringArray("checkpoint", nil, "also verify against the checkpoints in FILE (repeatable)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := cf.resolve()
		if err != nil {
			return err
		}
		cps, err := loadCheckpoints(cfg.AuditCheckpointFile, *extra)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		var pub ed25519.PublicKey
		if len(cps) > 0 {
			s, err := auth.LoadOrCreateNodeKey(cfg.NodeKeyPath(), false)
			if err != nil {
				return fmt.Errorf("audit verify: checkpoints need the node key to verify: %w", err)
			}
			pub = s.PublicKey()
		}
		db, err := openAuditStore(cmd.Context(), cfg, "audit verify")
		if err != nil {
			return err
		}
		defer db.Close()
		code, err := runAuditVerify(cmd.Context(), cmd.OutOrStdout(), db, cps, pub)
		if err != nil {
			return err
		}
		if code != 0 {
			return &ExitError{Code: code}
		}
		return nil
	}
	return cmd
}

// loadCheckpoints reads the node's checkpoint file (absent: none yet) and
// each extra file (which must exist).
func loadCheckpoints(nodeFile string, extra []string) ([]audit.FileCheckpoint, error) {
	cps, _, err := audit.ReadCheckpoints(nodeFile)
	if err != nil {
		return nil, err
	}
	for _, f := range extra {
		more, exists, err := audit.ReadCheckpoints(f)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, fmt.Errorf("--checkpoint %s: no such file", f)
		}
		if len(more) == 0 {
			return nil, fmt.Errorf("--checkpoint %s: no checkpoint in the file", f)
		}
		cps = append(cps, more...)
	}
	return cps, nil
}

// runAuditVerify verifies st's audit chain against cps (signatures with
// pub) and prints the verdict. It returns the exit code (0, exitAuditBroken
// or exitAuditCheckpoint); an error means the log could not be read.
func runAuditVerify(ctx context.Context, out io.Writer, st store.AuditLog, cps []audit.FileCheckpoint, pub ed25519.PublicKey) (int, error) {
	seqs := make([]int64, len(cps))
	for i, c := range cps {
		seqs[i] = c.Seq
	}
	res, err := audit.VerifyLogAt(ctx, st, 1000, seqs)
	if err != nil {
		return 0, fmt.Errorf("audit verify: read audit log: %w", err)
	}
	code := 0
	if res.OK {
		fmt.Fprintf(out, "audit chain ok: %d records", res.Records)
		if res.Legacy > 0 {
			fmt.Fprintf(out, " (%d legacy records, verified by the pre-canonical rule, before seq %d)", res.Legacy, max(res.SwitchSeq, res.HeadSeq+1))
		}
		fmt.Fprintln(out)
	} else {
		fmt.Fprintf(out, "audit chain broken at seq %d (%s): %s\n", res.BrokenSeq, res.BrokenID, res.Reason)
		code = exitAuditBroken
	}
	probs := audit.VerifyCheckpoints(res, cps, pub)
	for _, p := range probs {
		fmt.Fprintln(out, p.Message)
	}
	switch {
	case len(cps) == 0:
		fmt.Fprintln(out, "no checkpoints: a rewritten or truncated chain cannot be detected (see `agentos audit checkpoint`)")
	case len(probs) == 0:
		last := cps[len(cps)-1]
		for _, c := range cps {
			if c.Seq > last.Seq {
				last = c
			}
		}
		fmt.Fprintf(out, "checkpoints ok: %d signed checkpoints hold (latest at seq %d, %s)\n", len(cps), last.Seq, last.Time.UTC().Format(time.RFC3339))
	case code == 0:
		code = exitAuditCheckpoint
	}
	return code, nil
}

func newAuditCheckpointCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Sign the audit chain's head now, or --export the latest checkpoint",
		Long: `checkpoint verifies the records appended since the last checkpoint, signs the
chain's head (seq, head hash, time) with the node's Ed25519 key and appends it
to the checkpoint file (AGENTOS_AUDIT_CHECKPOINT_FILE, default
$AGENTOS_DATA_DIR/audit-checkpoints.jsonl); the orchestrator also does this
every AGENTOS_AUDIT_CHECKPOINT_INTERVAL. It refuses (exit 1) to sign a chain
that was rewritten or truncated since the last checkpoint.

--export writes nothing: it prints the latest checkpoint as JSON, to be kept
where the database's administrators cannot write; "agentos audit verify
--checkpoint FILE" verifies the chain against it.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	export := cmd.Flags().Bool("export", false, "print the latest checkpoint (JSON) instead of writing one")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := cf.resolve()
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if *export {
			last, ok, err := audit.LastCheckpoint(cfg.AuditCheckpointFile)
			if err != nil {
				return fmt.Errorf("audit checkpoint --export: %w", err)
			}
			if !ok {
				return &ExitError{Code: 1, Err: fmt.Errorf("audit checkpoint --export: no checkpoint in %s yet (run `agentos audit checkpoint`)", cfg.AuditCheckpointFile)}
			}
			b, _ := json.MarshalIndent(last.Checkpoint, "", "  ")
			fmt.Fprintln(out, string(b))
			return nil
		}
		signer, err := auth.LoadOrCreateNodeKey(cfg.NodeKeyPath(), false)
		if err != nil {
			return fmt.Errorf("audit checkpoint: %w", err)
		}
		db, err := openAuditStore(cmd.Context(), cfg, "audit checkpoint")
		if err != nil {
			return err
		}
		defer db.Close()
		cp := &audit.Checkpointer{Log: db, Path: cfg.AuditCheckpointFile, Signer: signer}
		c, _, err := cp.Write(cmd.Context(), true)
		if err != nil {
			return &ExitError{Code: 1, Err: fmt.Errorf("audit checkpoint: %w", err)}
		}
		fmt.Fprintf(out, "audit checkpoint written: seq %d, head %s, to %s\n", c.Seq, c.HeadHash, cfg.AuditCheckpointFile)
		return nil
	}
	return cmd
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/audit"
	"github.com/nexixai/agentos/internal/node"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

// newAuditCmd is `agentos audit`, the audit trail's operator commands.
func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Inspect the append-only, hash-chained audit log",
	}
	cmd.AddCommand(newAuditVerifyCmd())
	return cmd
}

func newAuditVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit log's hash chain (exit 1 when it is broken)",
		Long: `verify reads every audit record of the node's store in order and checks that
each record's hash matches its content, that each record holds the previous
record's hash, and that sequence numbers have no gaps. It prints
"audit chain ok: N records" or "audit chain broken at seq N: reason" and then
exits non-zero.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := cf.resolve()
		if err != nil {
			return err
		}
		if !postgres.IsURL(cfg.StoreURL) {
			path, err := sqlite.ParseURL(cfg.StoreURL)
			if err != nil {
				return fmt.Errorf("audit verify: %w", err)
			}
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("audit verify: no store at %s (set --data-dir or --store)", path)
			}
		}
		db, err := node.OpenBackend(cmd.Context(), cfg)
		if err != nil {
			return fmt.Errorf("audit verify: open %s: %w", cfg.StoreURL, err)
		}
		defer db.Close()
		ok, err := runAuditVerify(cmd.Context(), cmd.OutOrStdout(), db)
		if err != nil {
			return err
		}
		if !ok {
			return &ExitError{Code: 1}
		}
		return nil
	}
	return cmd
}

// runAuditVerify verifies st's audit chain and prints the verdict. It
// reports false when the chain is broken; an error means the log could not
// be read.
func runAuditVerify(ctx context.Context, out io.Writer, st store.AuditLog) (bool, error) {
	res, err := audit.VerifyLog(ctx, st, 1000)
	if err != nil {
		return false, fmt.Errorf("audit verify: read audit log: %w", err)
	}
	if !res.OK {
		fmt.Fprintf(out, "audit chain broken at seq %d (%s): %s\n", res.BrokenSeq, res.BrokenID, res.Reason)
		return false, nil
	}
	fmt.Fprintf(out, "audit chain ok: %d records\n", res.Records)
	return true, nil
}

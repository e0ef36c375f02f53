package cli

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/internal/node"
)

// newPeersCmd builds `agentos peers add|list|remove`, which edit this
// node's federation peers file. A running federation service picks up the
// change on its next request.
func newPeersCmd() *cobra.Command {
	p := &cobra.Command{
		Use:   "peers",
		Short: "Federation peers of this node (the peers file)",
	}
	p.AddCommand(newPeersAddCmd(), newPeersListCmd(), newPeersRemoveCmd())
	return p
}

// readPublicKey reads a signing.pub file ("ed25519:<base64>") or a PEM
// signing key (the public half is taken).
func readPublicKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if strings.Contains(string(b), "PRIVATE KEY") {
		k, err := identity.ParsePrivateKeyPEM(b)
		if err != nil {
			return "", err
		}
		return identity.EncodePublicKey(k.Public().(ed25519.PublicKey)), nil
	}
	return strings.TrimSpace(string(b)), nil
}

func newPeersAddCmd() *cobra.Command {
	var p peers.Peer
	var keyFile string
	cmd := &cobra.Command{
		Use:   "add STACK_ID --url https://HOST:PORT --public-key ed25519:...",
		Short: "Add (or replace) a peer",
		Args:  cobra.ExactArgs(1),
	}
	cf := bindConfigFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&p.FederationURL, "url", "", "the peer's mTLS peer API base URL (https://...)")
	f.StringVar(&p.Region, "peer-region", "", "the peer's region (for target selection)")
	f.StringVar(&p.PublicKey, "public-key", "", "the peer's identity-token public key (ed25519:<base64>)")
	f.StringVar(&keyFile, "public-key-file", "", "read the public key from the peer's signing.pub (or signing.key)")
	f.StringVar(&p.CAFile, "ca-file", "", "CA that signed the peer's certificate (default: this node's federation CA)")
	f.StringVar(&p.PinnedCertSHA256, "pin-sha256", "", "pin the peer's certificate by SHA-256 fingerprint")
	f.StringSliceVar(&p.Tenants, "tenants", nil, "the only tenants the peer may act for here (comma separated; default: every tenant)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := cf.resolve()
		if err != nil {
			return err
		}
		p.StackID = args[0]
		if keyFile != "" {
			if p.PublicKey != "" {
				return errors.New("give --public-key or --public-key-file, not both")
			}
			if p.PublicKey, err = readPublicKey(keyFile); err != nil {
				return fmt.Errorf("--public-key-file: %w", err)
			}
		}
		if p.StackID == cfg.StackID {
			return fmt.Errorf("%s is this node's own stack_id", p.StackID)
		}
		path := node.FederationFiles(cfg).Peers
		replaced, err := peers.Add(path, p)
		if err != nil {
			return err
		}
		verb := "added"
		if replaced {
			verb = "replaced"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "peer %s %s in %s\n", p.StackID, verb, path)
		return nil
	}
	return cmd
}

func newPeersListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the peers",
		Args:  cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := cf.resolve()
		if err != nil {
			return err
		}
		ps, err := peers.Load(node.FederationFiles(cfg).Peers)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(map[string]any{"peers": ps})
		}
		tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STACK_ID\tURL\tREGION\tPUBLIC_KEY\tPINNED")
		for _, p := range ps {
			pin := "-"
			if p.PinnedCertSHA256 != "" {
				pin = p.PinnedCertSHA256[:12] + "…"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.StackID, p.FederationURL, p.Region, p.PublicKey, pin)
		}
		return tw.Flush()
	}
	return cmd
}

func newPeersRemoveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove STACK_ID",
		Short: "Remove a peer",
		Args:  cobra.ExactArgs(1),
	}
	cf := bindConfigFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := cf.resolve()
		if err != nil {
			return err
		}
		path := node.FederationFiles(cfg).Peers
		if err := peers.Remove(path, args[0]); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "peer %s removed from %s\n", args[0], path)
		return nil
	}
	return cmd
}

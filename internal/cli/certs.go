package cli

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/node"
)

// newCertsCmd builds `agentos certs init|issue`: the federation CA and the
// node certificates and identity keys for local use.
func newCertsCmd() *cobra.Command {
	certs := &cobra.Command{
		Use:   "certs",
		Short: "Federation certificates: a CA and per-node certificates for mTLS between nodes",
	}
	certs.AddCommand(newCertsInitCmd(), newCertsIssueCmd())
	return certs
}

func newCertsInitCmd() *cobra.Command {
	var caDir string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the federation CA (kept if it exists) under $AGENTOS_HOME/federation/ca",
		Args:  cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cmd.Flags().StringVar(&caDir, "ca-dir", "", "CA directory (default $AGENTOS_HOME/federation/ca)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := cf.resolve()
		if err != nil {
			return err
		}
		if caDir == "" {
			caDir = federation.FilesIn(cfg.Home).CADir
		}
		ca, created, err := pki.InitCA(caDir)
		if err != nil {
			return err
		}
		state := "kept existing"
		if created {
			state = "created"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "federation CA %s: %s/%s (expires %s, sha256 %s)\n", state, caDir, pki.CAFile,
			ca.NotAfter.Format("2006-01-02"), pki.Fingerprint(ca))
		return nil
	}
	return cmd
}

func newCertsIssueCmd() *cobra.Command {
	var caDir, outDir string
	var hosts []string
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a node certificate (server and client) and identity signing key for --stack-id",
		Long: `issue signs a certificate for the node named by --stack-id with the federation
CA and writes node.pem, node-key.pem and ca.pem to --out (default
$AGENTOS_HOME/federation). It also makes the node's identity-token signing key
(signing.key) when missing and prints its public key, which the other node
adds with ` + "`agentos peers add`" + `.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cmd.Flags().StringVar(&caDir, "ca-dir", "", "CA directory (default $AGENTOS_HOME/federation/ca)")
	cmd.Flags().StringVar(&outDir, "out", "", "output directory (default $AGENTOS_HOME/federation)")
	cmd.Flags().StringSliceVar(&hosts, "hosts", nil, "DNS names and IPs of the node (default localhost,127.0.0.1,::1)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := cf.resolve()
		if err != nil {
			return err
		}
		files := node.FederationFiles(cfg)
		if caDir == "" {
			caDir = files.CADir
		}
		if outDir != "" {
			files = federation.FilesAt(outDir)
		}
		cert, err := pki.IssueNodeCert(caDir, cfg.StackID, hosts, files.Dir)
		if err != nil {
			return err
		}
		key, err := identity.LoadOrCreateKey(files.SigningKey, true)
		if err != nil {
			return err
		}
		pub := identity.EncodePublicKey(key.Public().(ed25519.PublicKey))
		if err := os.WriteFile(files.SigningPub, []byte(pub+"\n"), 0o644); err != nil {
			return err
		}
		var names []string
		names = append(names, cert.DNSNames...)
		for _, ip := range cert.IPAddresses {
			names = append(names, ip.String())
		}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "node certificate for %s: %s (hosts %s, expires %s)\n", cfg.StackID, files.Cert,
			strings.Join(names, ","), cert.NotAfter.Format("2006-01-02"))
		fmt.Fprintf(out, "identity signing key: %s\npublic key: %s\n", files.SigningKey, pub)
		fmt.Fprintf(out, "on the other node: agentos peers add %s --url https://<this node's peer address> --public-key %s\n", cfg.StackID, pub)
		return nil
	}
	return cmd
}

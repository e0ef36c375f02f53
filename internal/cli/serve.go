package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/natsd"
	"github.com/nexixai/agentos/internal/node"
)

func newServeCmd() *cobra.Command {
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run one AgentOS service in the foreground",
	}
	serve.AddCommand(
		serviceCmd("orchestrator", "Run the agent orchestrator (runs, events, admin API)",
			func(c *config.Config, addr string) { c.OrchestratorAddr = addr }, node.RunOrchestrator),
		serviceCmd("model-policy", "Run model-policy (governed model gateway)",
			func(c *config.Config, addr string) { c.ModelPolicyAddr = addr }, node.RunModelPolicy, catalogueFlag),
		serviceCmd("federation", "Run federation (client API and mTLS peer API)",
			func(c *config.Config, addr string) { c.FederationAddr = addr }, node.RunFederation),
		serviceCmd("gateway", "Run the gateway (one entry address in front of the services' replicas)",
			func(c *config.Config, addr string) { c.GatewayAddr = addr }, node.RunGateway),
		natsCmd(),
		workerCmd(),
	)
	return serve
}

// serviceCmd builds `agentos serve <name>` with the common configuration
// flags plus --addr for the service's own listen address, and the flags
// each of extra binds.
func serviceCmd(name, short string, setAddr func(*config.Config, string),
	run func(ctx context.Context, cfg config.Config) error, extra ...func(*configFlags)) *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	for _, bind := range extra {
		bind(cf)
	}
	cmd.Flags().StringVar(&addr, "addr", "", "listen address (overrides the service's address setting)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := cf.resolve(func(c *config.Config) {
			if addr != "" {
				setAddr(c, addr)
			}
		})
		if err != nil {
			return err
		}
		tuneGC()
		return run(cmd.Context(), cfg)
	}
	return cmd
}

// serviceGCPercent is the services' GOGC unless the environment sets one.
// Their live heap is small (tens of MB) and almost everything a request
// allocates is garbage when it ends, so the default of 100 spends several
// percent of the CPU collecting; 400 spends a quarter of that for a few
// hundred MB at most.
const serviceGCPercent = 400

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serviceGCPercent)
	}
}

// catalogueFlag adds --config (the model catalogue YAML) to model-policy.
func catalogueFlag(cf *configFlags) {
	cf.addString("config", "model catalogue YAML (env AGENTOS_MODEL_POLICY_CONFIG; default: built-in offline catalogue)",
		func(c *config.Config, v string) { c.ModelPolicyConfig = v })
}

// natsCmd is `agentos serve nats`: an embedded NATS server with JetStream,
// the cluster profile's bus. Its settings are flags, per server, as the
// supervisor passes them; the store defaults to $AGENTOS_HOME/nats/<name>.
func natsCmd() *cobra.Command {
	var o natsd.Options
	cmd := &cobra.Command{
		Use:   "nats",
		Short: "Run a NATS server with JetStream (the cluster profile's bus)",
		Args:  cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "nats", "server name (unique in a cluster); names the default store directory")
	f.StringVar(&o.Addr, "addr", "127.0.0.1:50086", "client listen address")
	f.StringVar(&o.MonitorAddr, "monitor-addr", "127.0.0.1:50087", "HTTP monitor listen address (/healthz)")
	f.StringVar(&o.ClusterAddr, "cluster-addr", "", "route listen address of a cluster member (empty: a single server, which fsyncs every message)")
	f.StringSliceVar(&o.Routes, "routes", nil, "cluster members' route URLs, nats://host:port (comma-separated)")
	f.StringVar(&o.StoreDir, "store-dir", "", "JetStream file store (default $AGENTOS_HOME/nats/<name>)")
	var controlSeed string
	f.StringVar(&controlSeed, "control-nkey-file", "", "turn authentication on: the control plane's NATS user nkey seed file; only it and the active workers of the store's registry (agentos workers add) may connect")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := cf.resolve()
		if err != nil {
			return err
		}
		if o.StoreDir == "" {
			o.StoreDir = filepath.Join(cfg.Home, "nats", o.Name)
		}
		logf := func(format string, args ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...) }
		if controlSeed != "" {
			pub, err := nkeyPublic(controlSeed)
			if err != nil {
				return fmt.Errorf("--control-nkey-file: %w", err)
			}
			list, closeStore := node.WorkerRegistry(cfg)
			defer closeStore()
			o.Auth = &natsd.Auth{ControlKey: pub, Workers: list}
		}
		return natsd.Run(cmd.Context(), o, logf)
	}
	return cmd
}

// nkeyPublic reads a user nkey seed file and returns its public key.
func nkeyPublic(seedFile string) (string, error) {
	seed, err := os.ReadFile(seedFile)
	if err != nil {
		return "", err
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return "", err
	}
	return kp.PublicKey()
}

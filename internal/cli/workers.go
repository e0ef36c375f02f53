package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/dispatch"
	"github.com/nexixai/agentos/internal/node"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/worker"
)

// workerRecord is a registered worker as the admin API shows it.
type workerRecord struct {
	store.Worker
	Live *dispatch.Worker `json:"live"`
}

func formatLabelSet(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

func newWorkersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "workers", Short: "Register, list and revoke worker nodes (platform admin; workers need the cluster profile's NATS bus)"}
	var jsonOut bool
	cmd.PersistentFlags().BoolVar(&jsonOut, "json", false, "print JSON")

	add := &cobra.Command{Use: "add <worker_id>", Short: "Register a worker and write its credentials under the home", Args: cobra.ExactArgs(1)}
	aa := bindAuthFlags(add)
	var labelItems, tenants []string
	add.Flags().StringSliceVar(&labelItems, "labels", nil, "the worker's labels, key=value,... (required; tool calls are placed by labels)")
	add.Flags().StringSliceVar(&tenants, "tenants", nil, "dedicate the worker to these tenants: it takes only their tool calls, and they go to it before any shared worker (default: any tenant)")
	add.RunE = func(cmd *cobra.Command, args []string) error {
		id := args[0]
		if !store.ValidWorkerID(id) {
			return &ExitError{Code: 2, Err: fmt.Errorf("worker id %q: want 1-63 lowercase letters, digits, _ or -", id)}
		}
		labels, err := node.ParseLabels(labelItems)
		if err != nil || len(labels) == 0 {
			return &ExitError{Code: 2, Err: errors.Join(errors.New("--labels: at least one key=value is required"), err)}
		}
		c, n, err := aa.client(asPlatformAdmin)
		if err != nil {
			return err
		}
		kp, err := nkeys.CreateUser()
		if err != nil {
			return err
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		var out struct {
			Worker workerRecord `json:"worker"`
		}
		body := map[string]any{"worker_id": id, "labels": labels, "public_key": pub, "tenants": tenants}
		if err := c.Do(cmd.Context(), http.MethodPost, c.BaseURL, "/v1/admin/workers", body, &out); err != nil {
			return err
		}
		dir := node.WorkersDir(n.Cfg.Home)
		creds := node.WorkerCreds{WorkerID: id, Labels: labels, Tenants: out.Worker.Tenants, SeedFile: filepath.Join(dir, id+".nk")}
		b, _ := json.MarshalIndent(creds, "", "  ")
		if err := errors.Join(os.MkdirAll(dir, 0o700), os.WriteFile(creds.SeedFile, seed, 0o600),
			os.WriteFile(node.WorkerCredsFile(n.Cfg.Home, id), append(b, '\n'), 0o600)); err != nil {
			return fmt.Errorf("worker %s is registered but its credentials could not be written (revoke it with `agentos workers revoke %s`): %w", id, id, err)
		}
		if jsonOut {
			return printJSON(cmd.OutOrStdout(), map[string]any{"worker": out.Worker, "credentials": node.WorkerCredsFile(n.Cfg.Home, id)})
		}
		dedicated := ""
		if len(out.Worker.Tenants) > 0 {
			dedicated = ", dedicated to " + strings.Join(out.Worker.Tenants, ",")
		}
		fmt.Fprintf(cmd.OutOrStdout(), "worker %s registered (labels %s%s); credentials in %s\nstart it with: agentos serve worker --id %s\n",
			id, formatLabelSet(labels), dedicated, node.WorkerCredsFile(n.Cfg.Home, id), id)
		return nil
	}

	list := &cobra.Command{Use: "list", Short: "List workers with their labels and, when live, heartbeat and tasks in flight", Args: cobra.NoArgs}
	la := bindAuthFlags(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		c, _, err := la.client(asPlatformAdmin)
		if err != nil {
			return err
		}
		ws, err := listWorkers(cmd.Context(), c.Do, c.BaseURL)
		if err != nil {
			return err
		}
		if jsonOut {
			return printJSON(cmd.OutOrStdout(), map[string]any{"workers": ws})
		}
		return printWorkers(cmd.OutOrStdout(), ws)
	}

	revoke := &cobra.Command{Use: "revoke <worker_id>", Short: "Revoke a worker: the bus refuses its credential from now on", Args: cobra.ExactArgs(1)}
	ra := bindAuthFlags(revoke)
	revoke.RunE = func(cmd *cobra.Command, args []string) error {
		c, _, err := ra.client(asPlatformAdmin)
		if err != nil {
			return err
		}
		var out struct {
			Worker workerRecord `json:"worker"`
		}
		if err := c.Do(cmd.Context(), http.MethodDelete, c.BaseURL, "/v1/admin/workers/"+args[0], nil, &out); err != nil {
			return err
		}
		if jsonOut {
			return printJSON(cmd.OutOrStdout(), map[string]any{"worker": out.Worker})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "worker %s revoked\n", args[0])
		return nil
	}
	cmd.AddCommand(add, list, revoke)
	return cmd
}

type doFunc func(ctx context.Context, method, base, path string, body, out any) error

func listWorkers(ctx context.Context, do doFunc, base string) ([]workerRecord, error) {
	var out struct {
		Workers []workerRecord `json:"workers"`
	}
	err := do(ctx, http.MethodGet, base, "/v1/admin/workers", nil, &out)
	if out.Workers == nil {
		out.Workers = []workerRecord{}
	}
	return out.Workers, err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printWorkers(w io.Writer, ws []workerRecord) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tSTATUS\tLABELS\tTENANTS\tLIVE\tIN FLIGHT\tLAST HEARTBEAT")
	for _, wk := range ws {
		live, inFlight, hb := "no", "-", "-"
		if wk.Live != nil {
			live = "yes"
			if wk.Live.Draining {
				live = "draining"
			}
			inFlight = fmt.Sprintf("%d/%d", wk.Live.InFlight, wk.Live.Concurrency)
			hb = wk.Live.LastHeartbeat.Format("15:04:05")
		}
		tenants := "any"
		if len(wk.Tenants) > 0 {
			tenants = strings.Join(wk.Tenants, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", wk.WorkerID, wk.Status, formatLabelSet(wk.Labels), tenants, live, inFlight, hb)
	}
	return tw.Flush()
}

// workerCmd is `agentos serve worker --id <id>`: a worker node with the
// credentials `agentos workers add` wrote under the home.
func workerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "worker", Short: "Run a worker node (runs placed tool calls and fronts model endpoints; needs the NATS bus and `agentos workers add`)", Args: cobra.NoArgs}
	cf := bindConfigFlags(cmd)
	var id string
	var labelItems, endpoints []string
	var concurrency int
	cmd.Flags().StringVar(&id, "id", "", "worker id (its credentials are $AGENTOS_HOME/workers/<id>.json and .nk)")
	cmd.Flags().StringSliceVar(&labelItems, "labels", nil, "labels to declare, key=value,... (default all the registered ones; only registered labels are allowed)")
	cmd.Flags().IntVar(&concurrency, "concurrency", worker.DefaultConcurrency, "tasks run at once")
	cmd.Flags().StringArrayVar(&endpoints, "model-endpoint", nil,
		"a model server this worker fronts, NAME=KIND:URL (repeatable); KIND is vllm, tgi, openai or ollama (the OpenAI wire, URL including /v1) or triton (KServe v2 HTTP, the server's root URL), e.g. llama=vllm:http://127.0.0.1:8000/v1")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := cf.resolve()
		if err != nil {
			return err
		}
		if id == "" {
			return &ExitError{Code: 2, Err: errors.New("--id: required")}
		}
		tuneGC()
		return node.RunWorker(cmd.Context(), cfg, node.WorkerOptions{ID: id, Labels: labelItems, Concurrency: concurrency,
			ModelEndpoints: endpoints})
	}
	return cmd
}

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	natsio "github.com/nats-io/nats.go"

	natsbus "github.com/nexixai/agentos/internal/bus/nats"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/workerproto"
	"github.com/nexixai/agentos/modelpolicy/providers"
	"github.com/nexixai/agentos/modelpolicy/providers/kserve"
	"github.com/nexixai/agentos/modelpolicy/providers/openai"
	"github.com/nexixai/agentos/worker"
)

// WorkerCreds is what `agentos workers add` keeps under the home for
// `agentos serve worker`: the id and labels in <id>.json, the nkey seed
// (the credential itself) in <id>.nk, both 0600.
type WorkerCreds struct {
	WorkerID string            `json:"worker_id"`
	Labels   map[string]string `json:"labels"`
	// Tenants the worker is dedicated to (none: any).
	Tenants  []string `json:"tenants,omitempty"`
	SeedFile string   `json:"seed_file"`
}

// registryGrace is how long a worker's first connection retries a refused
// credential: the bus re-reads the registry every second.
const registryGrace = 10 * time.Second

// WorkersDir holds the workers' credentials.
func WorkersDir(home string) string { return filepath.Join(home, "workers") }

// WorkerCredsFile is worker id's credentials file.
func WorkerCredsFile(home, id string) string { return filepath.Join(WorkersDir(home), id+".json") }

// ParseLabels reads key=value items (flag --labels) and checks them.
func ParseLabels(items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(strings.TrimSpace(it), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels %q: want key=value", it)
		}
		out[k] = v
	}
	if err := store.ValidateLabels("--labels", out); err != nil {
		return nil, err
	}
	return out, nil
}

// WorkerOptions are `agentos serve worker`'s flags.
type WorkerOptions struct {
	ID          string
	Labels      []string // key=value; default the registered labels
	Concurrency int
	// ModelEndpoints are NAME=KIND:URL items (--model-endpoint).
	ModelEndpoints []string
}

// RunWorker runs a worker node until ctx ends (then drains) or the bus
// refuses its credential.
func RunWorker(ctx context.Context, cfg config.Config, o WorkerOptions) error {
	id, labelItems, concurrency := o.ID, o.Labels, o.Concurrency
	b, err := os.ReadFile(WorkerCredsFile(cfg.Home, id))
	if err != nil {
		return fmt.Errorf("worker %s has no credentials here (run `agentos workers add %s --labels ...` with this home): %w", id, id, err)
	}
	var creds WorkerCreds
	if err := json.Unmarshal(b, &creds); err != nil {
		return fmt.Errorf("%s: %w", WorkerCredsFile(cfg.Home, id), err)
	}
	labels := creds.Labels
	if len(labelItems) > 0 {
		if labels, err = ParseLabels(labelItems); err != nil {
			return err
		}
		for k, v := range labels {
			if creds.Labels[k] != v {
				return fmt.Errorf("--labels %s=%s: not a registered label of worker %s (registered: %s)", k, v, id, fmt.Sprint(creds.Labels))
			}
		}
	}
	models, err := ParseModelEndpoints(o.ModelEndpoints, outbound.ModelClient(outbound.ForModels(cfg)))
	if err != nil {
		return err
	}
	if cfg.BusURL == "" {
		return errors.New("worker nodes need the NATS bus: set AGENTOS_BUS_URL (the cluster profile runs one); the in-process bus has no workers")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	refused := func(_ *natsio.Conn) {
		cancel(errors.New("the bus closed the connection: the worker's credential was refused (revoked?)"))
	}
	// The bus reads the registry every second: a worker started right
	// after `agentos workers add` may be refused at first.
	var wb *natsbus.Bus
	for grace := time.Now().Add(registryGrace); ; {
		bctx, bcancel := context.WithTimeout(ctx, busDialTimeout)
		wb, err = natsbus.Dial(bctx, natsbus.Config{URL: cfg.BusURL, Name: "worker " + id, NkeySeedFile: creds.SeedFile,
			InboxPrefix: workerproto.InboxPrefix(id), UseStreams: true, Options: []natsio.Option{natsio.ClosedHandler(refused)}})
		bcancel()
		if err == nil || !errors.Is(err, natsio.ErrAuthorization) && !strings.Contains(err.Error(), "Authorization Violation") ||
			time.Now().After(grace) || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("worker %s: connect to the bus (AGENTOS_BUS_URL): %w", id, err)
	}
	defer wb.Close()
	allow, err := builtin.ParseAllow(cfg.HTTPFetchAllow)
	if err != nil {
		return fmt.Errorf("AGENTOS_HTTP_FETCH_ALLOW: %w", err)
	}
	reg := tools.NewRegistry()
	for _, t := range []tools.Tool{builtin.Echo(), builtin.Sleep(), builtin.HTTPFetch(builtin.HTTPFetchConfig{Allow: allow})} {
		if err := reg.Register(t); err != nil {
			return err
		}
	}
	w, err := worker.New(worker.Config{ID: id, Labels: labels, Tenants: creds.Tenants, Concurrency: concurrency, Conn: wb.Conn(), Work: wb,
		Namespace: wb.Namespace(), Tools: reg, Models: models, Logger: newLogger(cfg, "worker")})
	if err != nil {
		return err
	}
	if err := w.Run(ctx); err != nil {
		return err
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// WorkerRegistry reads the worker registry from the store cfg names, for
// the bus's authentication (`agentos serve nats --control-nkey-file`).
// The store is opened on first use and again after a failure: the bus
// may start before the store answers. close releases it.
func WorkerRegistry(cfg config.Config) (list func(ctx context.Context) ([]store.Worker, error), close func()) {
	var mu sync.Mutex
	var b *Backend
	list = func(ctx context.Context) ([]store.Worker, error) {
		mu.Lock()
		defer mu.Unlock()
		if b == nil {
			nb, err := OpenBackend(ctx, cfg)
			if err != nil {
				return nil, err
			}
			b = nb
		}
		return b.ListWorkers(ctx)
	}
	close = func() {
		mu.Lock()
		defer mu.Unlock()
		if b != nil {
			_ = b.Close()
		}
	}
	return list, close
}

// ModelEndpointKinds are the --model-endpoint kinds.
var ModelEndpointKinds = []string{"vllm", "tgi", "openai", "ollama", "triton"}

// ParseModelEndpoints reads --model-endpoint NAME=KIND:URL items into the
// worker's model endpoints.
func ParseModelEndpoints(items []string, client *http.Client) (map[string]providers.Provider, error) {
	out := map[string]providers.Provider{}
	for _, it := range items {
		name, rest, ok := strings.Cut(it, "=")
		kind, rawURL, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 || name == "" {
			return nil, fmt.Errorf("--model-endpoint %q: want NAME=KIND:URL, e.g. llama=vllm:http://127.0.0.1:8000/v1", it)
		}
		if !store.ValidWorkerID(name) {
			return nil, fmt.Errorf("--model-endpoint %q: name %q: want 1-63 lowercase letters, digits, _ or -", it, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--model-endpoint %q: endpoint %s is given twice", it, name)
		}
		if !slices.Contains(ModelEndpointKinds, kind) {
			return nil, fmt.Errorf("--model-endpoint %q: kind %q: want one of %s", it, kind, strings.Join(ModelEndpointKinds, ", "))
		}
		u, err := url.Parse(rawURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--model-endpoint %q: URL %q: want an http(s)://host:port URL", it, rawURL)
		}
		p, err := modelEndpoint(name, kind, rawURL, client)
		if err != nil {
			return nil, fmt.Errorf("--model-endpoint %q: %w", it, err)
		}
		out[name] = p
	}
	return out, nil
}

// modelEndpoint is the adapter of one kind of model server.
func modelEndpoint(name, kind, baseURL string, client *http.Client) (providers.Provider, error) {
	switch kind {
	case "vllm", "tgi", "openai", "ollama": // all speak the OpenAI wire (Ollama's at /v1)
		return openai.New(openai.Config{Name: name, BaseURL: baseURL, HTTPClient: client}), nil
	case "triton": // KServe v2 HTTP, the URL is the server's root
		return kserve.New(kserve.Config{Name: name, BaseURL: baseURL, HTTPClient: client}), nil
	default:
		return nil, fmt.Errorf("kind %q: want one of %s", kind, strings.Join(ModelEndpointKinds, ", "))
	}
}

// Package config resolves node configuration with the precedence of
// CONTRACT §1 and §7: flags > environment > .agentos.env > defaults.
//
// It is the only package that reads AGENTOS_* variables (noenv_test.go
// holds the rest of the module to it): every setting is a Config field,
// resolved by Load from the same sources in the same order, and passed
// explicitly to the code that needs it. docs/operations.md, "Settings",
// lists them all.
package config

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Modes.
const (
	ModeDemo = "demo"
	ModeDev  = "dev"
	ModeProd = "prod"
)

// Config is the effective configuration of a node. Field comments give the
// environment variable and default.
//
// A new setting is a field here, its line in Load (and in Finish when its
// default derives from other fields), and its row in docs/operations.md's
// Settings table (TestSettingsTableIsComplete fails without it). Tag
// secrets `json:"-"`; a secret given inline or from a file is an X and
// X_FILE pair that Load resolves with resolver.secret.
type Config struct {
	Home                string  // AGENTOS_HOME, default ./.agentos
	DataDir             string  // AGENTOS_DATA_DIR, default $AGENTOS_HOME/data
	Mode                string  // AGENTOS_MODE, default demo
	OrchestratorAddr    string  // AGENTOS_ORCHESTRATOR_ADDR, default 127.0.0.1:50081
	ModelPolicyAddr     string  // AGENTOS_MODEL_POLICY_ADDR, default 127.0.0.1:50082
	FederationAddr      string  // AGENTOS_FEDERATION_ADDR, default 127.0.0.1:50083
	FederationPeerAddr  string  // AGENTOS_FEDERATION_PEER_ADDR, default 127.0.0.1:50084
	OrchestratorURL     string  // AGENTOS_ORCHESTRATOR_URL, default http:// + orchestrator addr
	ModelPolicyURL      string  // AGENTOS_MODEL_POLICY_URL, default http:// + model-policy addr
	FederationURL       string  // AGENTOS_FEDERATION_URL, default http:// + federation addr
	StackID             string  // AGENTOS_STACK_ID, default stk_local_node_a
	Region              string  // AGENTOS_REGION, default local
	Environment         string  // AGENTOS_ENVIRONMENT, default the mode
	StoreURL            string  // AGENTOS_STORE_URL, default sqlite://$AGENTOS_DATA_DIR/agentos.db
	DefaultTenant       string  // AGENTOS_DEFAULT_TENANT, default tnt_demo
	QuotaRunCreateQPS   float64 // AGENTOS_QUOTA_RUN_CREATE_QPS, default 10
	QuotaConcurrentRuns int     // AGENTOS_QUOTA_CONCURRENT_RUNS, default 25
	QuotaInvokeQPS      float64 // AGENTOS_QUOTA_INVOKE_QPS, default 20
	AuditSink           string  // AGENTOS_AUDIT_SINK: stdout, stderr, file:PATH; default file:$DATA_DIR/audit/audit.jsonl
	HTTPFetchAllow      string  // AGENTOS_HTTP_FETCH_ALLOW: comma-separated hosts/CIDRs tool.http.fetch, webhook tools and A2A tools may reach despite the SSRF guard
	MCPHTTPAllow        string  // AGENTOS_MCP_HTTP_ALLOW: comma-separated hosts/CIDRs HTTP MCP servers may be reached at despite the SSRF guard; default empty
	WebhookAllow        string  // AGENTOS_WEBHOOK_ALLOW: the same for run webhook deliveries (never the fetch tool's list)
	ModelPolicyConfig   string  // AGENTOS_MODEL_POLICY_CONFIG: YAML model catalogue; default built-in offline catalogue
	Executors           int     // AGENTOS_EXECUTORS, default 128: runs executed at once by this process (runs mostly wait on models and tools)
	IdempotencyTTLHours int     // AGENTOS_IDEMPOTENCY_TTL_HOURS, default 24
	LogLevel            string  // AGENTOS_LOG_LEVEL, default info

	// Traces (OpenTelemetry). The OTEL_* names are the SDK's standard ones,
	// resolved here like every setting (so .agentos.env works too) and
	// handed to internal/tracing; the SDK never reads the process env.
	OTLPTracesURL       string  // OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces; empty: no spans
	TracesSampler       string  // OTEL_TRACES_SAMPLER, default parentbased_traceidratio
	TracesSamplerArg    float64 // OTEL_TRACES_SAMPLER_ARG: the ratio, 0..1, default 1
	TraceCaptureContent bool    // AGENTOS_OTEL_CAPTURE_CONTENT: redacted prompt/completion text on model spans; default false

	// QuotaMaxStreams is the default per-tenant cap on concurrent run event
	// streams (SSE) on each service of the node, for tenants whose
	// quotas.runs.max_concurrent_streams is 0 or absent.
	QuotaMaxStreams int // AGENTOS_QUOTA_MAX_STREAMS, default 100
	// MaxStreams caps concurrent event streams per service process; 0
	// derives it from the process's file-descriptor limit (see
	// node.StreamCap and docs/operations.md).
	MaxStreams int // AGENTOS_MAX_STREAMS, default 0 (derived)
	// ThreadHistoryMessages and ThreadHistoryTokens bound the window of a
	// thread's earlier messages a run on the thread sends to its model
	// (older ones are dropped; tokens estimated at 4 bytes each). 0
	// messages sends no history; 0 tokens sets no token bound.
	ThreadHistoryMessages int // AGENTOS_THREAD_HISTORY_MESSAGES, default 50
	ThreadHistoryTokens   int // AGENTOS_THREAD_HISTORY_TOKENS, default 8000

	// HTTP server limits of every listener (docs/operations.md).
	HTTPReadHeaderTimeout time.Duration // AGENTOS_HTTP_READ_HEADER_TIMEOUT, default 10s: a request's headers must arrive within it
	HTTPBodyTimeout       time.Duration // AGENTOS_HTTP_BODY_TIMEOUT, default 30s: a request body must arrive within it (streamed responses are not bound by it)
	HTTPIdleTimeout       time.Duration // AGENTOS_HTTP_IDLE_TIMEOUT, default 120s: an idle keep-alive connection is closed after it
	HTTPMaxHeaderBytes    int           // AGENTOS_HTTP_MAX_HEADER_BYTES, default 65536: larger request headers get 431

	// Bounds of every outbound HTTP call (internal/outbound): to this
	// node's other services, federation peers, model backends, JWKS. None
	// bounds a response body, so streams last as long as their caller.
	OutboundDialTimeout                time.Duration // AGENTOS_OUTBOUND_DIAL_TIMEOUT, default 3s: connecting
	OutboundTLSHandshakeTimeout        time.Duration // AGENTOS_OUTBOUND_TLS_HANDSHAKE_TIMEOUT, default 4s: the TLS handshake
	OutboundResponseHeaderTimeout      time.Duration // AGENTOS_OUTBOUND_RESPONSE_HEADER_TIMEOUT, default 30s: request sent → response headers
	OutboundModelResponseHeaderTimeout time.Duration // AGENTOS_OUTBOUND_MODEL_RESPONSE_HEADER_TIMEOUT, default 5m: the same for calls waiting on a model (a non-streamed completion's headers come with its end)
	OutboundIdleConnTimeout            time.Duration // AGENTOS_OUTBOUND_IDLE_CONN_TIMEOUT, default 90s: an idle keep-alive connection is closed after it

	// Signed audit checkpoints (docs/operations.md, "Audit log"): the file
	// they are appended to, best kept where the database's administrators
	// cannot write, and how often the orchestrator writes one.
	AuditCheckpointFile string // AGENTOS_AUDIT_CHECKPOINT_FILE, default $DATA_DIR/audit-checkpoints.jsonl
	// RunLeaseTTL is how long an orchestrator replica holds a run without
	// renewing its lease (renewed every third of it): a replica killed
	// mid-run loses its runs to another replica after at most this long.
	RunLeaseTTL time.Duration // AGENTOS_RUN_LEASE_TTL, default 6s (renewed every 2s), at least 1s
	// ApprovalTimeout is how long a tool call waits for a person's
	// approval before it is rejected (an agent's approval_timeout_ms
	// overrides it).
	ApprovalTimeout time.Duration // AGENTOS_APPROVAL_TIMEOUT, default 24h, at least 1s

	// Webhook deliveries (docs/operations.md "Webhooks and schedules"):
	// attempt n waits about WebhookRetryBase·2^(n-1) (with jitter, at most
	// an hour) after the previous one; a delivery is given up once it is
	// older than WebhookRetryFor.
	WebhookRetryBase time.Duration // AGENTOS_WEBHOOK_RETRY_BASE, default 5s
	WebhookRetryFor  time.Duration // AGENTOS_WEBHOOK_RETRY_FOR, default 24h
	// Schedules: how often each orchestrator looks for due ticks, and how
	// late a tick may be found before it counts as missed (its schedule's
	// misfire policy then applies).
	SchedulePoll         time.Duration // AGENTOS_SCHEDULE_POLL, default 1s
	ScheduleMisfireGrace time.Duration // AGENTOS_SCHEDULE_MISFIRE_GRACE, default 10s

	// The artifact store (docs/operations.md "Artifacts"): files tools and
	// workers produce, kept on the filesystem or in an S3-compatible bucket.
	ArtifactStore       string        // AGENTOS_ARTIFACT_STORE: fs (default) or s3
	ArtifactDir         string        // AGENTOS_ARTIFACT_DIR, default $DATA_DIR/artifacts (fs store)
	ArtifactS3Endpoint  string        // AGENTOS_ARTIFACT_S3_ENDPOINT: http(s)://host[:port] of the S3-compatible server
	ArtifactS3Bucket    string        // AGENTOS_ARTIFACT_S3_BUCKET, default agentos-artifacts (created if missing)
	ArtifactS3Region    string        // AGENTOS_ARTIFACT_S3_REGION, default us-east-1
	ArtifactS3Prefix    string        // AGENTOS_ARTIFACT_S3_PREFIX: put before every object name, default none
	ArtifactS3AccessKey string        // AGENTOS_ARTIFACT_S3_ACCESS_KEY
	ArtifactS3SecretKey string        `json:"-"` // AGENTOS_ARTIFACT_S3_SECRET_KEY or _FILE
	ArtifactRetention   time.Duration // AGENTOS_ARTIFACT_RETENTION, default 168h; 0 keeps artifacts until deleted
	ArtifactSweep       time.Duration // AGENTOS_ARTIFACT_SWEEP_INTERVAL, default 1m: how often expired artifacts are deleted
	ArtifactMaxBytes    int           // AGENTOS_ARTIFACT_MAX_BYTES, default 104857600 (100 MiB): the largest single artifact
	// HTTPFetchArtifactThreshold: a tool.http.fetch body longer than this is
	// stored whole as an artifact (up to ArtifactMaxBytes) and the tool's
	// output names it instead of carrying a cut body; 0: the tool's output
	// cap (1 MiB), so only bodies that would have been cut are stored.
	HTTPFetchArtifactThreshold int // AGENTOS_HTTP_FETCH_ARTIFACT_THRESHOLD, default 0

	AuditCheckpointInterval time.Duration // AGENTOS_AUDIT_CHECKPOINT_INTERVAL (Go duration), default 1m; 0 disables the periodic writer

	// Trusted JWT issuers (CONTRACT §3): a YAML file listing issuers, and/or
	// one issuer from the variables below (AGENTOS_JWT_ISSUER plus one or
	// more of the JWKS URL, public key file and HS256 secret file).
	JWTIssuersFile     string // AGENTOS_JWT_ISSUERS_FILE: YAML list of {issuer, audience, jwks_url, public_key_files, hs256_secret_file}
	JWTIssuer          string // AGENTOS_JWT_ISSUER: the "iss" of the single configured issuer
	JWTAudience        string // AGENTOS_JWT_AUDIENCE: accepted "aud" values, comma- or space-separated (required in prod)
	JWTJWKSURL         string // AGENTOS_JWT_JWKS_URL: the issuer's JWKS (https in prod)
	JWTPublicKeyFile   string // AGENTOS_JWT_PUBLIC_KEY_FILE: PEM public key (RSA, EC or Ed25519) verifying any kid
	JWTHS256SecretFile string // AGENTOS_JWT_HS256_SECRET_FILE: HS256 shared secret, at least 32 bytes

	// The gateway (`agentos serve gateway`, docs/operations.md "Gateway"):
	// its listen address, the YAML file listing its upstream replicas
	// (default: the node's orchestrator, model-policy and federation URLs,
	// one replica each) and how often it probes each upstream's /readyz.
	GatewayAddr           string        // AGENTOS_GATEWAY_ADDR, default 127.0.0.1:50080
	GatewayUpstreamsFile  string        // AGENTOS_GATEWAY_UPSTREAMS_FILE, default none
	GatewayHealthInterval time.Duration // AGENTOS_GATEWAY_HEALTH_INTERVAL, default 2s
	// ConsoleTraceURL links a run's trace id in the web console to a trace
	// view; "{trace_id}" in it is replaced by the id. Empty: no link.
	ConsoleTraceURL string // AGENTOS_CONSOLE_TRACE_URL, default none
	// PostgresURL is the PostgreSQL server `agentos up --profile cluster`
	// puts the replicas' store in; empty: the profile runs its own under
	// $AGENTOS_HOME/postgres. It may carry a password.
	PostgresURL string `json:"-"` // AGENTOS_POSTGRES_URL, default none
	// The PostgreSQL store's bounds (a postgres:// AGENTOS_STORE_URL), so
	// that a database that hangs or is gone fails requests with
	// dependency_unavailable instead of holding them: the connection
	// pool's size (a URL's pool_max_conns wins), the server-side
	// statement_timeout of every statement but migrations, and how long
	// a connection attempt, or a wait for a free pooled connection, may
	// take.
	PostgresMaxConns         int           // AGENTOS_POSTGRES_MAX_CONNS, default 16
	PostgresStatementTimeout time.Duration // AGENTOS_POSTGRES_STATEMENT_TIMEOUT, default 10s
	PostgresConnectTimeout   time.Duration // AGENTOS_POSTGRES_CONNECT_TIMEOUT, default 5s

	// The control plane's bus (internal/bus): run events, cancel and wake
	// signals between orchestrator replicas. Empty: the in-process bus,
	// right for one orchestrator process; nats://host:port[,...]: NATS
	// JetStream, which replicas need to share live state. BusReplicas is
	// the JetStream streams' replication factor (3 on a 3-server cluster).
	BusURL      string `json:"-"` // AGENTOS_BUS_URL, default none (in-process); may carry credentials
	BusReplicas int    // AGENTOS_BUS_REPLICAS, default 1
	// BusNkeyFile is the control plane's NATS user nkey seed, for a bus
	// whose servers check credentials (the cluster profile's, which lets
	// in only this key and registered workers).
	BusNkeyFile string // AGENTOS_BUS_NKEY_FILE, default none
	// WorkerHeartbeatTimeout: a worker node silent this long is dead; an
	// idempotent call it ran goes to another worker, another is interrupted.
	WorkerHeartbeatTimeout time.Duration // AGENTOS_WORKER_HEARTBEAT_TIMEOUT, default 5s, at least 2s

	// The federation client API's TLS certificate in prod; default the
	// node's federation certificate (the peer API's).
	FederationClientCertFile string // AGENTOS_FEDERATION_CLIENT_CERT_FILE
	FederationClientKeyFile  string // AGENTOS_FEDERATION_CLIENT_KEY_FILE

	// The federation service's identity and peers, each overriding one
	// file of the default layout under $AGENTOS_HOME/federation
	// (federation.FilesIn); empty keeps the default. Production points them
	// at provisioned files.
	FederationCAFile         string // AGENTOS_FEDERATION_CA_FILE: CA bundle peers' certificates chain to
	FederationCertFile       string // AGENTOS_FEDERATION_CERT_FILE: this node's certificate
	FederationKeyFile        string // AGENTOS_FEDERATION_KEY_FILE: its TLS private key
	FederationSigningKeyFile string // AGENTOS_FEDERATION_SIGNING_KEY_FILE: identity key signing forwarded runs
	FederationPeersFile      string // AGENTOS_FEDERATION_PEERS_FILE: the peer list

	// NodeKeyFile is the node's service-to-service signing key (Ed25519
	// PEM); empty means $AGENTOS_HOME/keys/node_ed25519.pem (see
	// NodeKeyPath). Demo/dev create it, prod requires it.
	NodeKeyFile string // AGENTOS_NODE_KEY_FILE

	// BootstrapAdminToken is the prod bootstrap platform-admin bearer
	// token, from AGENTOS_BOOTSTRAP_ADMIN_TOKEN or the file named by
	// AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE (see Load for the _FILE rule);
	// empty: none.
	BootstrapAdminToken string `json:"-"` // AGENTOS_BOOTSTRAP_ADMIN_TOKEN (secret)

	// Pprof serves net/http/pprof under /debug/pprof/ on services that
	// listen on loopback.
	Pprof bool // AGENTOS_PPROF (true/false, 1/0), default false

	// Settings of the agentos CLI alone (no service reads them).
	Token           string `json:"-"` // AGENTOS_TOKEN: bearer token API commands send (--token wins); default from credentials.json
	NoSpinner       bool   // AGENTOS_NO_SPINNER (true/false, 1/0), default false: plain progress lines even on a terminal
	NodeBPortOffset int    // AGENTOS_NODE_B_PORT_OFFSET: the federated profile's node B port offset (--node-b-port-offset wins); default 0: the offset node B was created with, else 10

	// Alert e-mail (`agentos test-alert`, validate --test-alert, reports).
	// Kept as written; internal/alert validates them (alert.FromSettings)
	// so that a report can say what is wrong.
	AlertSMTPAddr     string // AGENTOS_ALERT_SMTP_ADDR: host:port of the SMTP server
	AlertFrom         string // AGENTOS_ALERT_FROM: sender address
	AlertTo           string // AGENTOS_ALERT_TO: comma-separated recipients
	AlertSMTPUsername string // AGENTOS_ALERT_SMTP_USERNAME: SMTP AUTH PLAIN user
	// AlertSMTPPassword is AGENTOS_ALERT_SMTP_PASSWORD or the content of
	// AGENTOS_ALERT_SMTP_PASSWORD_FILE.
	AlertSMTPPassword string `json:"-"` // secret
	AlertSMTPStartTLS string // AGENTOS_ALERT_SMTP_STARTTLS: true to require STARTTLS
}

// Lookup returns the value of an environment variable.
type Lookup func(key string) (string, bool)

// Load resolves the configuration from the environment (lookup, normally
// os.LookupEnv) and, under it, the .agentos.env file in the working
// directory (or envFile when non-empty). Flags are applied by the caller
// afterwards, then Finish fills derived defaults.
//
// Precedence, for every setting: flags > environment > .agentos.env >
// defaults. A variable set to the empty string counts as unset, so an
// empty environment variable does not hide the file's value.
//
// Secrets with a _FILE form (AGENTOS_X and AGENTOS_X_FILE) are one
// setting: the first source in that order that sets either form decides;
// a source that sets both is an error; the file is read here, once, and
// its trailing line ending dropped; a missing or empty file is an error
// naming the variable.
func Load(lookup Lookup, envFile string) (Config, error) {
	if envFile == "" {
		envFile = ".agentos.env"
	}
	fileVals, err := ReadEnvFile(envFile)
	if err != nil && !os.IsNotExist(err) {
		return Config{}, fmt.Errorf("read %s: %w", envFile, err)
	}
	r := &resolver{sources: []source{
		{name: "environment", get: lookup},
		{name: envFile, get: func(k string) (string, bool) { v, ok := fileVals[k]; return v, ok }},
	}}
	get := r.get
	c := Config{
		Home:                get("AGENTOS_HOME", ".agentos"),
		DataDir:             get("AGENTOS_DATA_DIR", ""),
		Mode:                get("AGENTOS_MODE", ModeDemo),
		OrchestratorAddr:    get("AGENTOS_ORCHESTRATOR_ADDR", "127.0.0.1:50081"),
		ModelPolicyAddr:     get("AGENTOS_MODEL_POLICY_ADDR", "127.0.0.1:50082"),
		FederationAddr:      get("AGENTOS_FEDERATION_ADDR", "127.0.0.1:50083"),
		FederationPeerAddr:  get("AGENTOS_FEDERATION_PEER_ADDR", "127.0.0.1:50084"),
		GatewayAddr:         get("AGENTOS_GATEWAY_ADDR", "127.0.0.1:50080"),
		OrchestratorURL:     get("AGENTOS_ORCHESTRATOR_URL", ""),
		ModelPolicyURL:      get("AGENTOS_MODEL_POLICY_URL", ""),
		FederationURL:       get("AGENTOS_FEDERATION_URL", ""),
		StackID:             get("AGENTOS_STACK_ID", "stk_local_node_a"),
		Region:              get("AGENTOS_REGION", "local"),
		Environment:         get("AGENTOS_ENVIRONMENT", ""),
		StoreURL:            get("AGENTOS_STORE_URL", ""),
		DefaultTenant:       get("AGENTOS_DEFAULT_TENANT", "tnt_demo"),
		ConsoleTraceURL:     get("AGENTOS_CONSOLE_TRACE_URL", ""),
		AuditSink:           get("AGENTOS_AUDIT_SINK", ""),
		HTTPFetchAllow:      get("AGENTOS_HTTP_FETCH_ALLOW", ""),
		MCPHTTPAllow:        get("AGENTOS_MCP_HTTP_ALLOW", ""),
		WebhookAllow:        get("AGENTOS_WEBHOOK_ALLOW", ""),
		ModelPolicyConfig:   get("AGENTOS_MODEL_POLICY_CONFIG", ""),
		LogLevel:            get("AGENTOS_LOG_LEVEL", "info"),
		AuditCheckpointFile: get("AGENTOS_AUDIT_CHECKPOINT_FILE", ""),

		ArtifactStore:       get("AGENTOS_ARTIFACT_STORE", "fs"),
		ArtifactDir:         get("AGENTOS_ARTIFACT_DIR", ""),
		ArtifactS3Endpoint:  get("AGENTOS_ARTIFACT_S3_ENDPOINT", ""),
		ArtifactS3Bucket:    get("AGENTOS_ARTIFACT_S3_BUCKET", "agentos-artifacts"),
		ArtifactS3Region:    get("AGENTOS_ARTIFACT_S3_REGION", "us-east-1"),
		ArtifactS3Prefix:    get("AGENTOS_ARTIFACT_S3_PREFIX", ""),
		ArtifactS3AccessKey: get("AGENTOS_ARTIFACT_S3_ACCESS_KEY", ""),

		JWTIssuersFile:     get("AGENTOS_JWT_ISSUERS_FILE", ""),
		JWTIssuer:          get("AGENTOS_JWT_ISSUER", ""),
		JWTAudience:        get("AGENTOS_JWT_AUDIENCE", ""),
		JWTJWKSURL:         get("AGENTOS_JWT_JWKS_URL", ""),
		JWTPublicKeyFile:   get("AGENTOS_JWT_PUBLIC_KEY_FILE", ""),
		JWTHS256SecretFile: get("AGENTOS_JWT_HS256_SECRET_FILE", ""),

		GatewayUpstreamsFile: get("AGENTOS_GATEWAY_UPSTREAMS_FILE", ""),
		PostgresURL:          get("AGENTOS_POSTGRES_URL", ""),
		BusURL:               get("AGENTOS_BUS_URL", ""),
		BusNkeyFile:          get("AGENTOS_BUS_NKEY_FILE", ""),

		FederationClientCertFile: get("AGENTOS_FEDERATION_CLIENT_CERT_FILE", ""),
		FederationClientKeyFile:  get("AGENTOS_FEDERATION_CLIENT_KEY_FILE", ""),
		FederationCAFile:         get("AGENTOS_FEDERATION_CA_FILE", ""),
		FederationCertFile:       get("AGENTOS_FEDERATION_CERT_FILE", ""),
		FederationKeyFile:        get("AGENTOS_FEDERATION_KEY_FILE", ""),
		FederationSigningKeyFile: get("AGENTOS_FEDERATION_SIGNING_KEY_FILE", ""),
		FederationPeersFile:      get("AGENTOS_FEDERATION_PEERS_FILE", ""),
		NodeKeyFile:              get("AGENTOS_NODE_KEY_FILE", ""),

		Token: get("AGENTOS_TOKEN", ""),

		AlertSMTPAddr:     get("AGENTOS_ALERT_SMTP_ADDR", ""),
		AlertFrom:         get("AGENTOS_ALERT_FROM", ""),
		AlertTo:           get("AGENTOS_ALERT_TO", ""),
		AlertSMTPUsername: get("AGENTOS_ALERT_SMTP_USERNAME", ""),
		AlertSMTPStartTLS: get("AGENTOS_ALERT_SMTP_STARTTLS", ""),
	}
	c.BootstrapAdminToken = r.secret("AGENTOS_BOOTSTRAP_ADMIN_TOKEN")
	c.AlertSMTPPassword = r.secret("AGENTOS_ALERT_SMTP_PASSWORD")
	c.ArtifactS3SecretKey = r.secret("AGENTOS_ARTIFACT_S3_SECRET_KEY")
	switch c.ArtifactStore {
	case "fs":
	case "s3":
		if c.ArtifactS3Endpoint == "" || c.ArtifactS3AccessKey == "" || c.ArtifactS3SecretKey == "" {
			r.fail("AGENTOS_ARTIFACT_STORE=s3 needs AGENTOS_ARTIFACT_S3_ENDPOINT, AGENTOS_ARTIFACT_S3_ACCESS_KEY and AGENTOS_ARTIFACT_S3_SECRET_KEY (or _FILE)")
		}
	default:
		r.fail("AGENTOS_ARTIFACT_STORE=%q: want fs or s3", c.ArtifactStore)
	}
	if v := get("AGENTOS_ARTIFACT_RETENTION", "168h"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			r.fail("AGENTOS_ARTIFACT_RETENTION=%q: want a duration such as 168h, or 0 to keep artifacts until deleted", v)
		}
		c.ArtifactRetention = d
	}
	r.duration("AGENTOS_ARTIFACT_SWEEP_INTERVAL", "1m", &c.ArtifactSweep)
	r.integer("AGENTOS_ARTIFACT_MAX_BYTES", "104857600", &c.ArtifactMaxBytes)
	r.integer("AGENTOS_HTTP_FETCH_ARTIFACT_THRESHOLD", "0", &c.HTTPFetchArtifactThreshold)
	r.float("AGENTOS_QUOTA_RUN_CREATE_QPS", "10", &c.QuotaRunCreateQPS)
	r.integer("AGENTOS_QUOTA_CONCURRENT_RUNS", "25", &c.QuotaConcurrentRuns)
	r.float("AGENTOS_QUOTA_INVOKE_QPS", "20", &c.QuotaInvokeQPS)
	r.integer("AGENTOS_EXECUTORS", "128", &c.Executors)
	r.integer("AGENTOS_IDEMPOTENCY_TTL_HOURS", "24", &c.IdempotencyTTLHours)
	r.integer("AGENTOS_QUOTA_MAX_STREAMS", "100", &c.QuotaMaxStreams)
	r.integer("AGENTOS_MAX_STREAMS", "0", &c.MaxStreams)
	r.integer("AGENTOS_THREAD_HISTORY_MESSAGES", "50", &c.ThreadHistoryMessages)
	r.integer("AGENTOS_THREAD_HISTORY_TOKENS", "8000", &c.ThreadHistoryTokens)
	if v := get("AGENTOS_BUS_REPLICAS", "1"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5 {
			r.fail("AGENTOS_BUS_REPLICAS=%q: want 1 to 5 (how many NATS servers keep each stream)", v)
		}
		c.BusReplicas = n
	}
	if c.BusURL != "" && !validBusURL(c.BusURL) {
		r.fail("AGENTOS_BUS_URL: want nats://host:port, several separated by commas, or empty for the in-process bus")
	}
	r.integer("AGENTOS_HTTP_MAX_HEADER_BYTES", "65536", &c.HTTPMaxHeaderBytes)
	r.duration("AGENTOS_HTTP_READ_HEADER_TIMEOUT", "10s", &c.HTTPReadHeaderTimeout)
	r.duration("AGENTOS_HTTP_BODY_TIMEOUT", "30s", &c.HTTPBodyTimeout)
	r.duration("AGENTOS_HTTP_IDLE_TIMEOUT", "120s", &c.HTTPIdleTimeout)
	r.duration("AGENTOS_GATEWAY_HEALTH_INTERVAL", "2s", &c.GatewayHealthInterval)
	r.integer("AGENTOS_POSTGRES_MAX_CONNS", "16", &c.PostgresMaxConns)
	if c.PostgresMaxConns < 1 {
		r.fail("AGENTOS_POSTGRES_MAX_CONNS=%d: want at least 1", c.PostgresMaxConns)
	}
	r.duration("AGENTOS_POSTGRES_STATEMENT_TIMEOUT", "10s", &c.PostgresStatementTimeout)
	r.duration("AGENTOS_POSTGRES_CONNECT_TIMEOUT", "5s", &c.PostgresConnectTimeout)
	r.duration("AGENTOS_RUN_LEASE_TTL", "6s", &c.RunLeaseTTL)
	r.duration("AGENTOS_WORKER_HEARTBEAT_TIMEOUT", "5s", &c.WorkerHeartbeatTimeout)
	if c.WorkerHeartbeatTimeout > 0 && c.WorkerHeartbeatTimeout < 2*time.Second {
		r.fail("AGENTOS_WORKER_HEARTBEAT_TIMEOUT=%q: want at least 2s (workers heartbeat every second)", c.WorkerHeartbeatTimeout)
	}
	if c.RunLeaseTTL > 0 && c.RunLeaseTTL < time.Second {
		r.fail("AGENTOS_RUN_LEASE_TTL=%q: want at least 1s (the lease is renewed every third of it)", c.RunLeaseTTL)
	}
	r.duration("AGENTOS_APPROVAL_TIMEOUT", "24h", &c.ApprovalTimeout)
	if c.ApprovalTimeout < time.Second {
		r.fail("AGENTOS_APPROVAL_TIMEOUT=%q: want at least 1s", c.ApprovalTimeout)
	}
	r.duration("AGENTOS_WEBHOOK_RETRY_BASE", "5s", &c.WebhookRetryBase)
	r.duration("AGENTOS_WEBHOOK_RETRY_FOR", "24h", &c.WebhookRetryFor)
	r.duration("AGENTOS_SCHEDULE_POLL", "1s", &c.SchedulePoll)
	r.duration("AGENTOS_SCHEDULE_MISFIRE_GRACE", "10s", &c.ScheduleMisfireGrace)
	r.duration("AGENTOS_OUTBOUND_DIAL_TIMEOUT", "3s", &c.OutboundDialTimeout)
	r.duration("AGENTOS_OUTBOUND_TLS_HANDSHAKE_TIMEOUT", "4s", &c.OutboundTLSHandshakeTimeout)
	r.duration("AGENTOS_OUTBOUND_RESPONSE_HEADER_TIMEOUT", "30s", &c.OutboundResponseHeaderTimeout)
	r.duration("AGENTOS_OUTBOUND_MODEL_RESPONSE_HEADER_TIMEOUT", "5m", &c.OutboundModelResponseHeaderTimeout)
	r.duration("AGENTOS_OUTBOUND_IDLE_CONN_TIMEOUT", "90s", &c.OutboundIdleConnTimeout)
	r.boolean("AGENTOS_PPROF", &c.Pprof)
	c.OTLPTracesURL = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	if base := get("OTEL_EXPORTER_OTLP_ENDPOINT", ""); c.OTLPTracesURL == "" && base != "" {
		c.OTLPTracesURL = strings.TrimSuffix(base, "/") + "/v1/traces"
	}
	if c.OTLPTracesURL != "" {
		if u, err := url.Parse(c.OTLPTracesURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			r.fail("OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=%q: want an http(s) URL such as http://127.0.0.1:4318", c.OTLPTracesURL)
		}
	}
	c.TracesSampler = get("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	switch c.TracesSampler {
	case "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio":
	default:
		r.fail("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", c.TracesSampler)
	}
	r.float("OTEL_TRACES_SAMPLER_ARG", "1", &c.TracesSamplerArg)
	if c.TracesSamplerArg < 0 || c.TracesSamplerArg > 1 {
		r.fail("OTEL_TRACES_SAMPLER_ARG=%v: want a ratio between 0 and 1", c.TracesSamplerArg)
	}
	r.boolean("AGENTOS_OTEL_CAPTURE_CONTENT", &c.TraceCaptureContent)
	r.boolean("AGENTOS_NO_SPINNER", &c.NoSpinner)
	if v := get("AGENTOS_NODE_B_PORT_OFFSET", "0"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			r.fail("AGENTOS_NODE_B_PORT_OFFSET=%q: want an integer (0: the default)", v)
		}
		c.NodeBPortOffset = n
	}
	if v := get("AGENTOS_AUDIT_CHECKPOINT_INTERVAL", "1m"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || (d > 0 && d < time.Second) {
			r.fail("AGENTOS_AUDIT_CHECKPOINT_INTERVAL=%q: want a duration of at least 1s (such as 1m), or 0 to disable", v)
		} else {
			c.AuditCheckpointInterval = d
		}
	}
	if len(r.errs) > 0 {
		return c, fmt.Errorf("invalid configuration: %s", strings.Join(r.errs, "; "))
	}
	return c, nil
}

// source is one place settings come from, in precedence order.
type source struct {
	name string // "environment" or the env file's path, for errors
	get  Lookup
}

// resolver reads settings from its sources and collects every invalid one,
// so that one error lists them all.
type resolver struct {
	sources []source
	errs    []string
}

func (r *resolver) fail(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// get returns the first non-empty value of key, else def.
func (r *resolver) get(key, def string) string {
	for _, s := range r.sources {
		if v, ok := s.get(key); ok && v != "" {
			return v
		}
	}
	return def
}

// secret resolves key and key_FILE (see Load).
func (r *resolver) secret(key string) string {
	fileKey := key + "_FILE"
	for _, s := range r.sources {
		v, _ := s.get(key)
		p, _ := s.get(fileKey)
		switch {
		case v != "" && p != "":
			r.fail("%s and %s are both set in the %s: set one", key, fileKey, s.name)
			return ""
		case v != "":
			return v
		case p != "":
			b, err := os.ReadFile(p)
			if err != nil {
				r.fail("%s: %v", fileKey, err)
				return ""
			}
			// Files written with echo or an editor end in a newline that is
			// not part of the secret.
			v = strings.TrimRight(string(b), "\r\n")
			if v == "" {
				r.fail("%s: %s is empty", fileKey, p)
				return ""
			}
			return v
		}
	}
	return ""
}

func (r *resolver) float(key, def string, dst *float64) {
	v := r.get(key, def)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		r.fail("%s=%q: want a non-negative number", key, v)
		return
	}
	*dst = f
}

func (r *resolver) integer(key, def string, dst *int) {
	v := r.get(key, def)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		r.fail("%s=%q: want a non-negative integer", key, v)
		return
	}
	*dst = n
}

func (r *resolver) duration(key, def string, dst *time.Duration) {
	v := r.get(key, def)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.fail("%s=%q: want a positive duration such as 10s", key, v)
		return
	}
	*dst = d
}

// boolean reads an off-by-default switch.
func (r *resolver) boolean(key string, dst *bool) {
	v := r.get(key, "false")
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail("%s=%q: want true or false (or 1 or 0)", key, v)
		return
	}
	*dst = b
}

// Finish fills the defaults derived from other fields and validates.
func (c *Config) Finish() error {
	if c.DataDir == "" {
		c.DataDir = filepath.Join(c.Home, "data")
	}
	if c.Environment == "" {
		c.Environment = c.Mode
	}
	if c.OrchestratorURL == "" {
		c.OrchestratorURL = "http://" + c.OrchestratorAddr
	}
	if c.ModelPolicyURL == "" {
		c.ModelPolicyURL = "http://" + c.ModelPolicyAddr
	}
	if c.FederationURL == "" {
		// In prod the federation client API is served over TLS.
		scheme := "http://"
		if c.Mode == ModeProd {
			scheme = "https://"
		}
		c.FederationURL = scheme + c.FederationAddr
	}
	if c.StoreURL == "" {
		c.StoreURL = "sqlite://" + filepath.Join(c.DataDir, "agentos.db")
	}
	if c.AuditCheckpointFile == "" {
		c.AuditCheckpointFile = filepath.Join(c.DataDir, "audit-checkpoints.jsonl")
	}
	if c.AuditSink == "" {
		c.AuditSink = "file:" + filepath.Join(c.DataDir, "audit", "audit.jsonl")
	}
	if c.ArtifactDir == "" {
		c.ArtifactDir = filepath.Join(c.DataDir, "artifacts")
	}
	if c.ArtifactStore == "" {
		c.ArtifactStore = "fs"
	}
	if c.ArtifactSweep <= 0 {
		c.ArtifactSweep = time.Minute
	}
	if c.Executors == 0 {
		c.Executors = 128
	}
	if c.PostgresMaxConns <= 0 {
		c.PostgresMaxConns = 16
	}
	// Zero values (a Config built in code) get the documented defaults.
	if c.HTTPReadHeaderTimeout <= 0 {
		c.HTTPReadHeaderTimeout = 10 * time.Second
	}
	if c.HTTPBodyTimeout <= 0 {
		c.HTTPBodyTimeout = 30 * time.Second
	}
	if c.HTTPIdleTimeout <= 0 {
		c.HTTPIdleTimeout = 120 * time.Second
	}
	if c.GatewayHealthInterval <= 0 {
		c.GatewayHealthInterval = 2 * time.Second
	}
	if c.HTTPMaxHeaderBytes <= 0 {
		c.HTTPMaxHeaderBytes = 64 << 10
	}
	for _, d := range []struct {
		dst *time.Duration
		def time.Duration
	}{{&c.OutboundDialTimeout, 3 * time.Second}, {&c.OutboundTLSHandshakeTimeout, 4 * time.Second},
		{&c.OutboundResponseHeaderTimeout, 30 * time.Second}, {&c.OutboundModelResponseHeaderTimeout, 5 * time.Minute},
		{&c.OutboundIdleConnTimeout, 90 * time.Second},
		{&c.PostgresStatementTimeout, 10 * time.Second}, {&c.PostgresConnectTimeout, 5 * time.Second}} {
		if *d.dst <= 0 {
			*d.dst = d.def
		}
	}
	switch c.Mode {
	case ModeDemo, ModeDev, ModeProd:
	default:
		return fmt.Errorf("invalid mode %q: want demo, dev or prod", c.Mode)
	}
	return nil
}

// DevMode reports whether header-only tenant auth and seeding are allowed.
func (c Config) DevMode() bool { return c.Mode == ModeDemo || c.Mode == ModeDev }

// NodeKeyPath is where the node's service-to-service signing key lives:
// NodeKeyFile, else keys/node_ed25519.pem under Home.
func (c Config) NodeKeyPath() string {
	if c.NodeKeyFile != "" {
		return c.NodeKeyFile
	}
	return filepath.Join(c.Home, "keys", "node_ed25519.pem")
}

// CredentialsFile is where demo/dev credentials are written.
func (c Config) CredentialsFile() string { return filepath.Join(c.Home, "credentials.json") }

// ReadEnvFile parses KEY=VALUE lines (comments with #, optional quotes).
func ReadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		s = strings.TrimPrefix(s, "export ")
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE", path, line)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
			v = v[1 : len(v)-1]
		}
		vals[strings.TrimSpace(k)] = v
	}
	return vals, sc.Err()
}

// validBusURL reports whether v is one or more comma-separated
// nats://host:port URLs (tls:// too: the NATS client speaks it).
func validBusURL(v string) bool {
	for _, part := range strings.Split(v, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
			return false
		}
	}
	return true
}

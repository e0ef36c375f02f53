package kubernetes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// The chart is rendered by a real helm (v4, pinned in .ci/run, which
// builds it and sets AGENTOS_TEST_HELM to its path). Without it the test
// skips: helm is a tool, not a dependency of the module.
func helm(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("AGENTOS_TEST_HELM")
	if bin == "" {
		t.Skip("AGENTOS_TEST_HELM (path to a helm v4 binary) is not set; .ci/run sets it")
	}
	return bin
}

const release = "prod"

// object is one rendered manifest, decoded into its API type.
type object struct {
	kind, name string
	typed      any
	doc        map[string]any // as rendered
}

// apiTypes are the kinds the chart may render, by apiVersion/kind. A kind
// outside it fails the test: a new kind gets a type and checks here.
var apiTypes = map[string]func() any{
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"v1/Secret":                              func() any { return new(corev1.Secret) },
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return new(networkingv1.NetworkPolicy) },
}

// natsRepository is where the official NATS chart is published.
const natsRepository = "https://nats-io.github.io/k8s/helm/charts/"

// chartWithoutNATS copies the chart into a temporary directory without its
// NATS dependency, after checking how Chart.yaml declares it. Helm refuses
// to render a chart whose declared dependencies are not in charts/, even
// one its condition turns off, and the NATS repository is not reachable
// here; with nats.enabled=false (the default) the dependency renders
// nothing, so the copy renders exactly what an install does.
func chartWithoutNATS(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "agentos")
	require.NoError(t, os.CopyFS(dir, os.DirFS("agentos")))
	_ = os.RemoveAll(filepath.Join(dir, "charts")) // a local `helm dependency update` leaves one
	_ = os.Remove(filepath.Join(dir, "Chart.lock"))
	b, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	require.NoError(t, err)
	var chart map[string]any
	require.NoError(t, yaml.Unmarshal(b, &chart))
	deps, _ := chart["dependencies"].([]any)
	require.Len(t, deps, 1, "Chart.yaml's dependencies: NATS alone")
	nats, _ := deps[0].(map[string]any)
	require.Equal(t, "nats", nats["name"])
	require.Equal(t, natsRepository, nats["repository"])
	require.Equal(t, "nats.enabled", nats["condition"], "NATS is installed only when asked for")
	require.NotEmpty(t, nats["version"])
	delete(chart, "dependencies")
	b, err = yaml.Marshal(chart)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Chart.yaml"), b, 0o644))
	return dir
}

// render runs helm template on the chart with the given values files and
// set flags, returning helm's output and its error.
func render(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helm(t), append([]string{"template", release, chartWithoutNATS(t), "--namespace", "agentos"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return errOut.String(), fmt.Errorf("helm template %v: %w: %s", args, err, errOut.String())
	}
	return out.String(), nil
}

// decodeAll strictly decodes every document of a rendered chart into its
// API type: a field the type does not have (a typo, a wrong nesting level)
// or a value of the wrong type fails, as the API server's strict field
// validation would refuse it.
func decodeAll(t *testing.T, manifests string) []object {
	t.Helper()
	var objs []object
	dec := yaml.NewDecoder(strings.NewReader(manifests))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if doc == nil {
			continue
		}
		kind, _ := doc["kind"].(string)
		apiVersion, _ := doc["apiVersion"].(string)
		meta, _ := doc["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		newType, ok := apiTypes[apiVersion+"/"+kind]
		require.Truef(t, ok, "%s %s: kind %s/%s is not one the chart test knows", kind, name, apiVersion, kind)
		raw, err := json.Marshal(doc)
		require.NoError(t, err)
		typed := newType()
		jd := json.NewDecoder(bytes.NewReader(raw))
		jd.DisallowUnknownFields()
		require.NoErrorf(t, jd.Decode(typed), "%s %s does not decode strictly into its API type", kind, name)
		require.NotEmptyf(t, name, "a %s without metadata.name", kind)
		objs = append(objs, object{kind: kind, name: name, typed: typed, doc: doc})
	}
	return objs
}

func ofKind[T any](objs []object) []*T {
	var out []*T
	for _, o := range objs {
		if v, ok := o.typed.(*T); ok {
			out = append(out, v)
		}
	}
	return out
}

// matches reports whether selector (matchLabels only: the chart uses no
// expressions) selects a pod with labels.
func matches(selector map[string]string, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// component is the component label of a Deployment's pods.
func component(d *appsv1.Deployment) string {
	return d.Spec.Template.Labels["app.kubernetes.io/component"]
}

// specOf maps a component to its OpenAPI document, whose /healthz and
// /readyz the probes must call.
var specOf = map[string]string{
	"orchestrator": "agent-orchestrator",
	"model-policy": "model-policy",
	"federation":   "federation",
	"gateway":      "gateway",
}

// documentedSettings are the AGENTOS_* names docs/operations.md documents
// (its Settings table and the sections it points to).
func documentedSettings(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	require.NoError(t, err)
	set := map[string]bool{}
	for _, m := range regexp.MustCompile("`(AGENTOS_[A-Z0-9_]+)`").FindAllStringSubmatch(string(b), -1) {
		set[m[1]] = true
	}
	return set
}

// checkInvariants holds a render to what the chart promises operators.
func checkInvariants(t *testing.T, objs []object, existingSecrets ...string) {
	t.Helper()
	deployments := ofKind[appsv1.Deployment](objs)
	require.NotEmpty(t, deployments)
	pdbs := ofKind[policyv1.PodDisruptionBudget](objs)
	hpas := ofKind[autoscalingv2.HorizontalPodAutoscaler](objs)
	policies := ofKind[networkingv1.NetworkPolicy](objs)
	services := ofKind[corev1.Service](objs)
	secrets := slices.Clone(existingSecrets)
	for _, s := range ofKind[corev1.Secret](objs) {
		secrets = append(secrets, s.Name)
	}
	configMaps := map[string]bool{}
	for _, c := range ofKind[corev1.ConfigMap](objs) {
		configMaps[c.Name] = true
	}
	settings := documentedSettings(t)

	for _, d := range deployments {
		pod := d.Spec.Template
		name := d.Name
		require.Truef(t, matches(d.Spec.Selector.MatchLabels, pod.Labels), "%s: its selector does not select its pods", name)
		require.NotNilf(t, pod.Spec.AutomountServiceAccountToken, "%s: automountServiceAccountToken unset", name)
		require.Falsef(t, *pod.Spec.AutomountServiceAccountToken, "%s mounts a service account token", name)
		for _, v := range pod.Spec.Volumes {
			switch {
			case v.Secret != nil:
				if !slices.Contains(secrets, v.Secret.SecretName) {
					t.Errorf("%s: volume %s names Secret %s, which the render neither creates nor was given", name, v.Name, v.Secret.SecretName)
				}
				require.NotNilf(t, v.Secret.DefaultMode, "%s: secret volume %s without defaultMode", name, v.Name)
				require.Equalf(t, int32(0o400), *v.Secret.DefaultMode, "%s: secret volume %s is not 0400", name, v.Name)
			case v.ConfigMap != nil:
				require.Truef(t, configMaps[v.ConfigMap.Name], "%s: volume %s names ConfigMap %s, which is not rendered", name, v.Name, v.ConfigMap.Name)
			}
		}
		for _, c := range pod.Spec.Containers {
			where := name + "/" + c.Name
			// Probes: both, HTTP, on the service's own port, on the
			// endpoints its OpenAPI document defines.
			ports := map[string]bool{}
			for _, p := range c.Ports {
				ports[p.Name] = true
			}
			for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz", c.StartupProbe: "/healthz"} {
				require.NotNilf(t, probe, "%s: a probe on %s is missing", where, path)
				require.NotNilf(t, probe.HTTPGet, "%s: the %s probe is not an HTTP GET", where, path)
				require.Equalf(t, path, probe.HTTPGet.Path, "%s: probe path", where)
				require.Truef(t, ports[probe.HTTPGet.Port.StrVal], "%s: probe port %q is not a container port", where, probe.HTTPGet.Port.String())
			}
			if spec, err := os.ReadFile(filepath.Join("..", "..", "docs", "api", specOf[component(d)], "openapi.yaml")); err == nil {
				require.Containsf(t, string(spec), "\n  /healthz:", "%s: its OpenAPI document has no /healthz", where)
				require.Containsf(t, string(spec), "\n  /readyz:", "%s: its OpenAPI document has no /readyz", where)
			} else if component(d) != "gateway" { // the gateway's document arrives with the gateway
				t.Errorf("%s: no OpenAPI document for component %q: %v", where, component(d), err)
			}
			// Resources: requests for scheduling and the HPA (CPU
			// utilisation is relative to the request), a memory limit.
			require.Falsef(t, c.Resources.Requests.Cpu().IsZero(), "%s: no CPU request (the HPA needs one)", where)
			require.Falsef(t, c.Resources.Requests.Memory().IsZero(), "%s: no memory request", where)
			require.Falsef(t, c.Resources.Limits.Memory().IsZero(), "%s: no memory limit", where)
			// Non-root, read-only, nothing to escalate to.
			sc := c.SecurityContext
			require.NotNilf(t, sc, "%s: no securityContext", where)
			require.Truef(t, sc.RunAsNonRoot != nil && *sc.RunAsNonRoot, "%s: runAsNonRoot is not true", where)
			require.Truef(t, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "%s: the root filesystem is writable", where)
			require.Truef(t, sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "%s: privilege escalation allowed", where)
			require.Truef(t, sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL"), "%s: capabilities not all dropped", where)
			// Settings: documented ones only; _FILE settings point into a
			// mounted volume; the store URL comes from a Secret.
			mountAt := map[string]bool{}
			for _, m := range c.VolumeMounts {
				mountAt[m.MountPath] = true
			}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "AGENTOS_") {
					require.Truef(t, settings[e.Name], "%s: %s is not a setting docs/operations.md documents", where, e.Name)
				}
				if strings.HasSuffix(e.Name, "_FILE") {
					require.Truef(t, mountAt[filepath.Dir(e.Value)], "%s: %s=%s is not in a mounted volume", where, e.Name, e.Value)
				}
				if e.Name == "AGENTOS_STORE_URL" {
					require.Truef(t, e.Value == "" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil, "%s: the store URL is not read from a Secret", where)
				}
			}
		}

		// A PDB and (unless the replica count is fixed) an HPA on CPU.
		var pdbFor []string
		for _, p := range pdbs {
			if matches(p.Spec.Selector.MatchLabels, pod.Labels) {
				pdbFor = append(pdbFor, p.Name)
			}
		}
		require.Lenf(t, pdbFor, 1, "%s: PodDisruptionBudgets selecting its pods", name)
		var hpaFor []*autoscalingv2.HorizontalPodAutoscaler
		for _, h := range hpas {
			if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == name {
				hpaFor = append(hpaFor, h)
			}
		}
		if d.Spec.Replicas == nil {
			require.Lenf(t, hpaFor, 1, "%s: no replica count and no HorizontalPodAutoscaler", name)
			m := hpaFor[0].Spec.Metrics
			require.Truef(t, len(m) == 1 && m[0].Resource != nil && m[0].Resource.Name == corev1.ResourceCPU, "%s: the HPA does not scale on CPU", name)
			require.LessOrEqualf(t, *hpaFor[0].Spec.MinReplicas, hpaFor[0].Spec.MaxReplicas, "%s: HPA min above max", name)
		} else {
			require.Emptyf(t, hpaFor, "%s: a fixed replica count and an HPA fight each other", name)
		}

		// NetworkPolicies: each pod is selected by one that restricts both
		// directions. Only the gateway admits anything from outside the
		// release unless the operator opened more.
		var covering []*networkingv1.NetworkPolicy
		for _, np := range policies {
			if matches(np.Spec.PodSelector.MatchLabels, pod.Labels) {
				covering = append(covering, np)
			}
		}
		require.Lenf(t, covering, 1, "%s: NetworkPolicies selecting its pods", name)
		np := covering[0]
		require.ElementsMatchf(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, np.Spec.PolicyTypes, "%s: policy types", np.Name)
		for i, rule := range np.Spec.Ingress {
			require.NotEmptyf(t, rule.Ports, "%s: ingress rule %d opens every port", np.Name, i)
		}
		for i, rule := range np.Spec.Egress {
			require.NotEmptyf(t, rule.Ports, "%s: egress rule %d opens every port", np.Name, i)
		}

		// Every Service of this component points at a port the pod has.
		for _, s := range services {
			if !matches(s.Spec.Selector, pod.Labels) {
				continue
			}
			for _, p := range s.Spec.Ports {
				found := false
				for _, c := range pod.Spec.Containers {
					for _, cp := range c.Ports {
						found = found || cp.Name == p.TargetPort.StrVal
					}
				}
				require.Truef(t, found, "Service %s: targetPort %s is not a port of %s", s.Name, p.TargetPort.String(), name)
			}
		}
	}
	// Nothing selects no pod: a Service, PDB or NetworkPolicy whose
	// selector matches none is a typo in a label.
	selectsSome := func(sel map[string]string) bool {
		for _, d := range deployments {
			if matches(sel, d.Spec.Template.Labels) {
				return true
			}
		}
		return false
	}
	for _, s := range services {
		require.Truef(t, selectsSome(s.Spec.Selector), "Service %s selects no pod", s.Name)
	}
	for _, h := range hpas {
		require.Truef(t, slices.ContainsFunc(deployments, func(d *appsv1.Deployment) bool { return d.Name == h.Spec.ScaleTargetRef.Name }),
			"HPA %s scales %s, which is not rendered", h.Name, h.Spec.ScaleTargetRef.Name)
	}
}

// ingressPeers returns, per component, the ingress rules' sources of its
// NetworkPolicy.
func ingressOf(t *testing.T, objs []object, comp string) []networkingv1.NetworkPolicyIngressRule {
	t.Helper()
	for _, np := range ofKind[networkingv1.NetworkPolicy](objs) {
		if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] == comp {
			return np.Spec.Ingress
		}
	}
	t.Fatalf("no NetworkPolicy for %s", comp)
	return nil
}

// TestChartProduction renders the documented production values (the
// operator's Secrets, prod mode) and holds them to every invariant, plus
// the shape a default install must have.
func TestChartProduction(t *testing.T) {
	out, err := render(t, "-f", "testdata/prod.yaml")
	require.NoError(t, err)
	objs := decodeAll(t, out)
	checkInvariants(t, objs, "agentos-secrets", "agentos-federation-identity")

	count := map[string]int{}
	for _, o := range objs {
		count[o.kind]++
	}
	require.Equal(t, map[string]int{
		"Deployment": 4, "Service": 5, "PodDisruptionBudget": 4,
		"HorizontalPodAutoscaler": 4, "NetworkPolicy": 4,
	}, count, "a production render (no Secret: the operator's)")

	// Only the gateway admits traffic from outside the release: every
	// other service's ingress comes from the release's own pods.
	for _, comp := range []string{"orchestrator", "model-policy", "federation"} {
		for _, rule := range ingressOf(t, objs, comp) {
			require.NotEmptyf(t, rule.From, "%s: an ingress rule open to anyone", comp)
			for _, peer := range rule.From {
				require.Truef(t, peer.PodSelector != nil && peer.NamespaceSelector == nil && peer.IPBlock == nil &&
					peer.PodSelector.MatchLabels["app.kubernetes.io/instance"] == release,
					"%s: ingress from outside the release: %+v", comp, peer)
			}
		}
	}
	gw := ingressOf(t, objs, "gateway")
	require.Len(t, gw, 1)
	require.Empty(t, gw[0].From, "the gateway is open to any source by default")

	for _, d := range ofKind[appsv1.Deployment](objs) {
		c := d.Spec.Template.Spec.Containers[0]
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		require.Equal(t, "prod", env["AGENTOS_MODE"], d.Name)
		require.Equal(t, "/etc/agentos/secrets/node_ed25519.pem", env["AGENTOS_NODE_KEY_FILE"], d.Name)
		require.Equal(t, "/etc/agentos/secrets/bootstrap-admin.token", env["AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE"], d.Name)
		require.Equal(t, "https://prod-agentos-federation:50083", env["AGENTOS_FEDERATION_URL"], d.Name)
		require.Equal(t, []string{"serve", component(d), "--addr", fmt.Sprintf("0.0.0.0:%d", c.Ports[0].ContainerPort)}, c.Args, d.Name)
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = m.Name
		}
		switch component(d) {
		case "federation":
			require.Equal(t, corev1.URISchemeHTTPS, c.ReadinessProbe.HTTPGet.Scheme, "federation's client API is TLS in prod")
			require.Equal(t, "/etc/agentos/federation/node.pem", env["AGENTOS_FEDERATION_CERT_FILE"])
			require.Equal(t, "federation-identity", mounts["/etc/agentos/federation"])
		case "gateway":
			// It verifies federation's TLS with $AGENTOS_HOME/federation/ca.pem.
			require.Equal(t, "federation-identity", mounts["/var/lib/agentos/federation"])
		default:
			require.NotContains(t, slices.Collect(maps.Values(mounts)), "federation-identity", "%s holds federation's keys", d.Name)
		}
	}
}

// TestChartNATSEgress: with nats.enabled the services (not the gateway)
// may reach the NATS chart's pods of the same release on 4222, and
// without it (and no networkPolicy.natsTo) nothing may reach NATS.
func TestChartNATSEgress(t *testing.T) {
	natsRule := func(objs []object, comp string) bool {
		for _, np := range ofKind[networkingv1.NetworkPolicy](objs) {
			if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != comp {
				continue
			}
			for _, r := range np.Spec.Egress {
				if len(r.Ports) == 1 && r.Ports[0].Port.IntValue() == 4222 {
					require.Len(t, r.To, 1)
					require.Equal(t, map[string]string{"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": release},
						r.To[0].PodSelector.MatchLabels)
					return true
				}
			}
		}
		return false
	}
	out, err := render(t, "-f", "testdata/prod.yaml", "--set", "nats.enabled=true")
	require.NoError(t, err)
	objs := decodeAll(t, out)
	checkInvariants(t, objs, "agentos-secrets", "agentos-federation-identity")
	for _, comp := range []string{"orchestrator", "model-policy", "federation"} {
		require.Truef(t, natsRule(objs, comp), "%s: no egress to NATS with nats.enabled", comp)
	}
	require.False(t, natsRule(objs, "gateway"), "the gateway has no business with NATS")

	out, err = render(t, "-f", "testdata/prod.yaml")
	require.NoError(t, err)
	objs = decodeAll(t, out)
	for _, comp := range []string{"orchestrator", "model-policy", "federation", "gateway"} {
		require.Falsef(t, natsRule(objs, comp), "%s: egress to NATS without nats.enabled", comp)
	}
}

// TestChartEveryOption renders a values file that turns on every optional
// branch (created Secret, JWT, catalogue, peers, fixed replicas, opened
// metrics, peer API and NATS egress) and holds it to the same invariants.
func TestChartEveryOption(t *testing.T) {
	out, err := render(t, "-f", "testdata/everything.yaml")
	require.NoError(t, err)
	objs := decodeAll(t, out)
	checkInvariants(t, objs, "agentos-federation-identity", "agentos-providers")

	var secret *corev1.Secret
	for _, s := range ofKind[corev1.Secret](objs) {
		secret = s
	}
	require.NotNil(t, secret, "secrets.create renders a Secret")
	require.ElementsMatch(t, []string{"store-url", "node_ed25519.pem", "bootstrap-admin.token", "jwt-hs256.secret"}, keysOf(secret.StringData))
	configMaps := map[string]*corev1.ConfigMap{}
	for _, c := range ofKind[corev1.ConfigMap](objs) {
		configMaps[c.Name] = c
	}
	require.Contains(t, configMaps["prod-agentos-federation-peers"].Data["peers.yaml"], "stack_id: stk_peer_b")
	require.Equal(t, "backends: []\n", configMaps["prod-agentos-model-policy-catalogue"].Data["catalogue.yaml"])
	for _, d := range ofKind[appsv1.Deployment](objs) {
		if component(d) == "orchestrator" {
			require.EqualValues(t, 3, *d.Spec.Replicas)
		}
		if component(d) == "federation" {
			require.Equal(t, corev1.URISchemeHTTP, d.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Scheme, "dev mode serves federation over plain HTTP")
		}
	}
	fed := ingressOf(t, objs, "federation")
	require.True(t, slices.ContainsFunc(fed, func(r networkingv1.NetworkPolicyIngressRule) bool {
		return len(r.Ports) == 1 && r.Ports[0].Port.StrVal == "peer" && len(r.From) == 1 && r.From[0].IPBlock != nil
	}), "the peer API is opened to federation.peerAPI.allowedFrom only")
}

func keysOf(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestChartRefusesIncompleteValues: values that would install pods that
// cannot start fail the render, naming the value.
func TestChartRefusesIncompleteValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no secrets at all", []string{"--set", "federation.identitySecret=x"}, "secrets.create.storeURL"},
		{"no node key", []string{"--set", "federation.identitySecret=x", "--set", "secrets.create.storeURL=postgres://db/agentos"}, "secrets.create.nodeKey"},
		{"prod federation without identity", []string{"--set", "secrets.existingSecret=s"}, "federation.identitySecret is required in prod"},
		// values.schema.json: a misspelt key or an unknown mode is refused
		// instead of silently ignored.
		{"misspelt key", []string{"-f", "testdata/prod.yaml", "--set", "modelpolicy.catalogue=x"}, "additional properties 'modelpolicy' not allowed"},
		{"misspelt service key", []string{"-f", "testdata/prod.yaml", "--set", "gateway.ingresFrom[0].ipBlock.cidr=10.0.0.0/8"}, "additional properties 'ingresFrom' not allowed"},
		{"unknown mode", []string{"-f", "testdata/prod.yaml", "--set", "mode=production"}, "/mode"},
		{"short bootstrap token", []string{"-f", "testdata/prod.yaml", "--set", "secrets.existingSecret=", "--set", "secrets.create.storeURL=postgres://db/a",
			"--set", "secrets.create.nodeKey=k", "--set", "secrets.create.bootstrapAdminToken=short"}, "at least 32 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := render(t, tc.args...)
			require.Error(t, err, "rendered:\n%s", out)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestChartSchemas validates every object of both renders against the
// Kubernetes API's JSON schemas (required fields, types, enums, formats),
// offline, with schema/validate.mjs. Its npm package is installed by
// .ci/run (npm ci in schema/), which sets AGENTOS_TEST_K8S_SCHEMAS so that
// a missing install fails instead of skipping.
func TestChartSchemas(t *testing.T) {
	requireSchemas(t)
	for _, values := range []string{"testdata/prod.yaml", "testdata/everything.yaml"} {
		t.Run(filepath.Base(values), func(t *testing.T) {
			out, err := render(t, "-f", values)
			require.NoError(t, err)
			var docs []any
			for _, o := range decodeAll(t, out) {
				docs = append(docs, o.doc)
			}
			validateSchemas(t, docs)
		})
	}
}

func requireSchemas(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("schema", "node_modules", "kubernetes-models")); err != nil {
		if os.Getenv("AGENTOS_TEST_K8S_SCHEMAS") != "" {
			t.Fatalf("AGENTOS_TEST_K8S_SCHEMAS is set but the schemas are not installed (cd deploy/kubernetes/schema && npm ci): %v", err)
		}
		t.Skip("schema/node_modules is not installed (cd deploy/kubernetes/schema && npm ci)")
	}
}

// runValidator runs schema/validate.mjs on docs.
func runValidator(t *testing.T, docs []any) (string, error) {
	t.Helper()
	raw, err := json.Marshal(docs)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "objects.json")
	require.NoError(t, os.WriteFile(file, raw, 0o600))
	cmd := exec.Command("node", "validate.mjs", file)
	cmd.Dir = "schema"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func validateSchemas(t *testing.T, docs []any) {
	t.Helper()
	out, err := runValidator(t, docs)
	require.NoErrorf(t, err, "schema validation:\n%s", out)
	require.Containsf(t, out, fmt.Sprintf("%d valid, 0 invalid", len(docs)), "schema validation:\n%s", out)
}

// TestSchemaValidatorRefuses: the validator is not a rubber stamp; an
// object the API server would refuse fails it.
func TestSchemaValidatorRefuses(t *testing.T) {
	requireSchemas(t)
	bad := map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "x"},
		// template.spec without containers, which the API requires.
		"spec": map[string]any{"selector": map[string]any{}, "template": map[string]any{"spec": map[string]any{}}},
	}
	out, err := runValidator(t, []any{bad})
	require.Error(t, err, "%s", out)
	require.Contains(t, out, "spec/template/spec must have required property containers")
}

// TestChartLint: helm's own linter, strict (warnings fail), on both
// values files.
func TestChartLint(t *testing.T) {
	for _, values := range []string{"testdata/prod.yaml", "testdata/everything.yaml"} {
		cmd := exec.Command(helm(t), "lint", "--strict", chartWithoutNATS(t), "-f", values)
		out, err := cmd.CombinedOutput()
		require.NoErrorf(t, err, "helm lint --strict -f %s:\n%s", values, out)
		require.Containsf(t, string(out), "0 chart(s) failed", "helm lint -f %s:\n%s", values, out)
	}
}

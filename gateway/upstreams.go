package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"

	"gopkg.in/yaml.v3"
)

// Pool names: the services the gateway routes to.
const (
	Orchestrator = "orchestrator"
	ModelPolicy  = "model-policy"
	Federation   = "federation"
)

// Upstreams lists the replicas behind the gateway: the shared pools every
// tenant uses, and the dedicated pools (the seed's "Model B") that serve
// only the tenants they list. It is the schema of the upstreams file
// (AGENTOS_GATEWAY_UPSTREAMS_FILE, docs/operations.md):
//
//	orchestrator: [http://127.0.0.1:50081, http://127.0.0.1:50181]
//	model-policy: [http://127.0.0.1:50082]
//	federation:   [http://127.0.0.1:50083]
//	dedicated:
//	  - name: acme
//	    tenants: [tnt_acme]
//	    orchestrator: [http://127.0.0.1:50281]
//	    model-policy: [http://127.0.0.1:50282]
type Upstreams struct {
	Orchestrator []string    `yaml:"orchestrator"`
	ModelPolicy  []string    `yaml:"model-policy"`
	Federation   []string    `yaml:"federation"`
	Dedicated    []Dedicated `yaml:"dedicated"`
}

// Dedicated is a pool of orchestrator and model-policy replicas reserved
// for the tenants it lists. A service it lists no replica for is served by
// the shared pool; federation is always shared.
type Dedicated struct {
	Name         string   `yaml:"name"`
	Tenants      []string `yaml:"tenants"`
	Orchestrator []string `yaml:"orchestrator"`
	ModelPolicy  []string `yaml:"model-policy"`
}

// maxUpstreamsFile bounds the upstreams file (a few hundred replicas fit
// in a fraction of it).
const maxUpstreamsFile = 1 << 20

// LoadUpstreams reads and validates an upstreams file.
func LoadUpstreams(path string) (Upstreams, error) {
	f, err := os.Open(path)
	if err != nil {
		return Upstreams{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxUpstreamsFile+1))
	if err != nil {
		return Upstreams{}, err
	}
	if len(b) > maxUpstreamsFile {
		return Upstreams{}, fmt.Errorf("%s: larger than %d bytes", path, maxUpstreamsFile)
	}
	u, err := ParseUpstreams(b)
	if err != nil {
		return Upstreams{}, fmt.Errorf("%s: %w", path, err)
	}
	return u, nil
}

// ParseUpstreams decodes an upstreams file. Unknown keys are errors (a
// misspelt "model_policy" would otherwise leave a pool empty in silence).
func ParseUpstreams(b []byte) (Upstreams, error) {
	var u Upstreams
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&u); err != nil && !errors.Is(err, io.EOF) {
		return Upstreams{}, err
	}
	return u, u.Validate()
}

// Validate checks every URL (absolute http or https, no path, query or
// user info), that each shared pool has a replica, and that dedicated
// pools have distinct names, at least one tenant and one replica, and no
// tenant listed twice. Errors name the field, e.g. "dedicated[0].tenants[1]".
func (u Upstreams) Validate() error {
	var problems []error
	checkList := func(field string, urls []string, required bool) {
		if required && len(urls) == 0 {
			problems = append(problems, fmt.Errorf("%s: at least one upstream URL is required", field))
		}
		seen := map[string]bool{}
		for i, raw := range urls {
			f := fmt.Sprintf("%s[%d]", field, i)
			if err := checkURL(raw); err != nil {
				problems = append(problems, fmt.Errorf("%s: %w", f, err))
			} else if seen[raw] {
				problems = append(problems, fmt.Errorf("%s: %q is listed twice", f, raw))
			}
			seen[raw] = true
		}
	}
	checkList(Orchestrator, u.Orchestrator, true)
	checkList(ModelPolicy, u.ModelPolicy, true)
	checkList(Federation, u.Federation, false)
	names := map[string]bool{}
	tenants := map[string]string{}
	for i, d := range u.Dedicated {
		f := fmt.Sprintf("dedicated[%d]", i)
		switch {
		case d.Name == "":
			problems = append(problems, fmt.Errorf("%s.name: required", f))
		case names[d.Name]:
			problems = append(problems, fmt.Errorf("%s.name: %q is used twice", f, d.Name))
		}
		names[d.Name] = true
		if len(d.Tenants) == 0 {
			problems = append(problems, fmt.Errorf("%s.tenants: at least one tenant is required", f))
		}
		for j, t := range d.Tenants {
			tf := fmt.Sprintf("%s.tenants[%d]", f, j)
			if t == "" {
				problems = append(problems, fmt.Errorf("%s: empty tenant id", tf))
			} else if prev, dup := tenants[t]; dup {
				problems = append(problems, fmt.Errorf("%s: tenant %q is already listed in %s", tf, t, prev))
			}
			tenants[t] = tf
		}
		if len(d.Orchestrator) == 0 && len(d.ModelPolicy) == 0 {
			problems = append(problems, fmt.Errorf("%s: lists no orchestrator or model-policy upstream", f))
		}
		checkList(f+"."+Orchestrator, d.Orchestrator, false)
		checkList(f+"."+ModelPolicy, d.ModelPolicy, false)
	}
	return errors.Join(problems...)
}

func checkURL(raw string) error {
	p, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %v", raw, err)
	}
	switch {
	case !slices.Contains([]string{"http", "https"}, p.Scheme):
		return fmt.Errorf("%q: want an http:// or https:// URL", raw)
	case p.Host == "":
		return fmt.Errorf("%q: no host", raw)
	case p.User != nil:
		return fmt.Errorf("%q: user info is not allowed", raw)
	case p.Path != "" && p.Path != "/", p.RawQuery != "", p.Fragment != "":
		return fmt.Errorf("%q: want scheme://host:port only (requests keep their own path)", raw)
	}
	return nil
}

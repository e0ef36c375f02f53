package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// envReaders are the functions that read the process environment, and
// those that write it (a setting smuggled through os.Setenv is read back
// by Load behind its callers' backs).
var envReaders = map[string]map[string]bool{
	"os":      {"Getenv": true, "LookupEnv": true, "Environ": true, "ExpandEnv": true, "Setenv": true, "Unsetenv": true, "Clearenv": true},
	"syscall": {"Getenv": true, "Environ": true, "Setenv": true, "Unsetenv": true, "Clearenv": true},
}

// envAllowed are the places outside this package that touch the
// environment without naming a constant variable ("path:func" of the
// enclosing function), each with the reason it reads no AGENTOS_* setting
// behind config's back. Keep it short: a new entry needs a reason as good.
var envAllowed = map[string]string{
	// The one door: the CLI hands the process environment to Load.
	"internal/cli/flags.go:resolve":      "passes os.LookupEnv to config.Load",
	"bench/runload/main.go:run":          "passes os.LookupEnv to config.Load to find the credentials file",
	"bench/tokenstream/main.go:run":      "passes os.LookupEnv to config.Load to find the credentials file",
	"bench/ssefanout/main.go:adminToken": "passes os.LookupEnv to config.Load to find the credentials file",
	"bench/ssefanout/main.go:memoryCmd":  "passes the environment on to the orchestrator it starts, reading no setting",
	// Children inherit the environment; the child resolves it with Load.
	"internal/supervisor/supervisor.go:ChildEnv":            "copies the environment into a spawned service's, reading no setting",
	"tests/testnode/testnode.go:StartService":               "passes the environment on to the service it starts",
	"tests/testnode/testnode.go:Run":                        "passes the environment on to the agentos command it runs",
	"tests/e2e/operator_helpers.go:opNewNode":               "copies the environment minus every AGENTOS_* variable into a child's",
	"tests/e2e/workers_test.go:startProc":                   "passes the environment on to the nats and worker processes it starts, like testnode",
	"tests/interop/node_test.go:TestNodeSDKAgainstRealNode": "passes the environment on to the Node.js SDK process",
	"bench/streamflood/main.go:run":                         "passes the environment on to the node it starts",
	// The test binary impersonating a service resolves its settings like one.
	"internal/cli/fakes_test.go:runFakeService":             "passes os.LookupEnv to config.Load",
	"internal/supervisor/supervisor_test.go:runFakeService": "passes os.LookupEnv to config.Load",
	// Provider variables named by the operator in the model catalogue
	// (api_key_env, base_url_env: OPENAI_API_KEY and the like), not
	// AGENTOS_* settings.
	"modelpolicy/catalogue.go:lookupEnv": "reads the variables the model catalogue names",
}

// testSwitchHelpers are non-_test.go files that may read AGENTOS_TEST_*
// switches: test helper packages that only tests import.
var testSwitchHelpers = map[string]bool{
	"internal/store/postgres/pgtest/pgtest.go": true, // AGENTOS_TEST_POSTGRES_URL: the throwaway cluster's DSN
	"internal/blob/blobtest/seaweed.go":        true, // AGENTOS_TEST_S3_SERVER: the weed binary .ci/run builds
}

// envRead is one place that touches the environment.
type envRead struct {
	pos   string // file:line
	where string // path:func, the envAllowed key
	key   string // the variable, when constant
	call  string // e.g. os.Getenv
}

// findEnvReads lists the environment reads in one parsed package
// directory. consts are the string constants declared in it, so that
// os.Getenv(someConst) is seen for what it reads.
func findEnvReads(fset *token.FileSet, rel string, files map[string]*ast.File) []envRead {
	consts := map[string]string{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if v, err := strconv.Unquote(lit.Value); err == nil {
							consts[name.Name] = v
						}
					}
				}
			}
			return true
		})
	}
	var out []envRead
	for name, f := range files {
		pkgOf := map[string]string{} // local import name -> "os" or "syscall"
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if envReaders[p] == nil {
				continue
			}
			local := p
			if imp.Name != nil {
				local = imp.Name.Name
			}
			pkgOf[local] = p
		}
		if len(pkgOf) == 0 {
			continue
		}
		file := filepath.ToSlash(filepath.Join(rel, filepath.Base(name)))
		for _, d := range f.Decls {
			fn := "(package)"
			if fd, ok := d.(*ast.FuncDecl); ok {
				fn = fd.Name.Name
			}
			calls := map[*ast.SelectorExpr]*ast.CallExpr{}
			ast.Inspect(d, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok {
					if sel, ok := c.Fun.(*ast.SelectorExpr); ok {
						calls[sel] = c
					}
				}
				return true
			})
			ast.Inspect(d, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				id, ok := sel.X.(*ast.Ident)
				if !ok || !envReaders[pkgOf[id.Name]][sel.Sel.Name] {
					return true
				}
				r := envRead{pos: file + ":" + strconv.Itoa(fset.Position(sel.Pos()).Line), where: file + ":" + fn,
					call: pkgOf[id.Name] + "." + sel.Sel.Name}
				// A constant key: a literal or a named string constant. A
				// function value (os.LookupEnv passed on) or a computed key
				// stays unknown.
				if c := calls[sel]; c != nil && len(c.Args) > 0 && r.call != "os.ExpandEnv" {
					switch a := c.Args[0].(type) {
					case *ast.BasicLit:
						r.key, _ = strconv.Unquote(a.Value)
					case *ast.Ident:
						r.key = consts[a.Name]
					}
				}
				out = append(out, r)
				return true
			})
		}
	}
	return out
}

// violations applies the rule to the reads of one file set.
func violations(reads []envRead) []string {
	var bad []string
	for _, r := range reads {
		file, _, _ := strings.Cut(r.where, ":")
		switch {
		case strings.HasPrefix(r.key, "AGENTOS_TEST_") && (strings.HasSuffix(file, "_test.go") || testSwitchHelpers[file]):
			// A test-only switch (e.g. AGENTOS_TEST_POSTGRES_URL): no
			// service or CLI reads it, so it is no setting of the node.
		case strings.HasPrefix(r.key, "AGENTOS_"):
			bad = append(bad, r.pos+": "+r.call+"("+r.key+") outside internal/config: make it a config.Config field")
		case r.key != "":
			// A variable of someone else's (GOGC, TERM, USER...).
		case envAllowed[r.where] == "":
			bad = append(bad, r.pos+": "+r.call+" in "+r.where+" may read AGENTOS_* settings: pass config.Config instead (or justify it in envAllowed)")
		}
	}
	sort.Strings(bad)
	return bad
}

// TestNoEnvOutsideConfig holds the module to one configuration path: no
// code outside internal/config reads an AGENTOS_* variable, so a setting
// in .agentos.env or a flag is never silently ignored by a direct
// os.Getenv (docs/operations.md, "Settings").
func TestNoEnvOutsideConfig(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "the module root is two levels up")
	self := filepath.Join(root, "internal", "config")

	fset := token.NewFileSet()
	var reads []envRead
	seen := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if path == self {
			return nil // the one package allowed to read the environment
		}
		if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
			return filepath.SkipDir // another module
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		files := map[string]*ast.File{}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
				continue
			}
			p := filepath.Join(path, e.Name())
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			files[p] = f
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		for _, r := range findEnvReads(fset, rel, files) {
			seen[r.where] = true
			reads = append(reads, r)
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, reads, "the walk found no environment access at all: is it looking at the module?")
	require.Empty(t, violations(reads), "read settings through config.Config")
	for where := range envAllowed {
		require.True(t, seen[where], "envAllowed entry %s matches nothing any more: remove it", where)
	}
}

// TestNoEnvCheckerCatches proves the checker above fails where it should.
func TestNoEnvCheckerCatches(t *testing.T) {
	t.Parallel()
	src := map[string]string{
		"a.go": `package a
import (
	"os"
	xos "os"
)
const keyEnv = "AGENTOS_NODE_KEY_FILE"
func direct() string { return os.Getenv("AGENTOS_PPROF") }
func viaConst() (string, bool) { return xos.LookupEnv(keyEnv) }
func other() string { return os.Getenv("GOGC") }
func dynamic(k string) string { return os.Getenv(k) }
func passed() func(string) (string, bool) { return os.LookupEnv }
func all() []string { return os.Environ() }
func smuggle() error { return os.Setenv("AGENTOS_MODEL_POLICY_CONFIG", "x") }
`,
		"a_test.go": `package a
import "os"
func switchOK() string { return os.Getenv("AGENTOS_TEST_SEED") }
func notASwitch() string { return os.Getenv("AGENTOS_MODE") }
`,
		"b.go": `package a
import "os"
func helperSwitch() string { return os.Getenv("AGENTOS_TEST_SEED") }
`,
	}
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	for name, s := range src {
		f, err := parser.ParseFile(fset, name, s, 0)
		require.NoError(t, err)
		files[name] = f
	}
	got := violations(findEnvReads(fset, "x", files))
	want := []string{"x/a.go:7", "x/a.go:8", "x/a.go:10", "x/a.go:11", "x/a.go:12", "x/a.go:13", "x/a_test.go:4", "x/b.go:3"}
	require.Len(t, got, len(want), "%q", got)
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, w+":")
		}
		require.True(t, found, "no violation at %s in %q", w, got)
	}
}

// Package e2e runs AgentOS as real processes on loopback and checks what an
// operator and a client see.
package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexixai/agentos/tests/testnode"
)

var (
	opBuildOnce sync.Once
	opBinPath   string
	opBuildErr  error
	opBuildOut  []byte
)

// opBuildBinary builds ./cmd/agentos once per test process and returns its path.
func opBuildBinary(t *testing.T) string {
	t.Helper()
	opBuildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "agentos-e2e-bin-")
		if err != nil {
			opBuildErr = err
			return
		}
		opBinPath = filepath.Join(dir, "agentos")
		cmd := exec.Command("go", "build", "-o", opBinPath, "./cmd/agentos")
		cmd.Dir = root
		opBuildOut, opBuildErr = cmd.CombinedOutput()
	})
	if opBuildErr != nil {
		t.Fatalf("go build ./cmd/agentos: %v\n%s", opBuildErr, opBuildOut)
	}
	return opBinPath
}

// opFreeAddr returns a loopback address whose port is free now (see
// testnode.FreeAddr for why not :0).
func opFreeAddr(t *testing.T) string {
	t.Helper()
	return testnode.FreeAddr(t)
}

// opNode is one node under test: a temp working directory with free ports.
type opNode struct {
	t   *testing.T
	bin string
	dir string
	env []string
	// Addresses of the services.
	orchestrator, modelPolicy, federation string
}

func opNewNode(t *testing.T) *opNode {
	t.Helper()
	n := &opNode{t: t, bin: opBuildBinary(t), dir: t.TempDir(),
		orchestrator: opFreeAddr(t), modelPolicy: opFreeAddr(t), federation: opFreeAddr(t)}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENTOS_") {
			env = append(env, kv)
		}
	}
	n.env = append(env,
		"AGENTOS_ORCHESTRATOR_ADDR="+n.orchestrator,
		"AGENTOS_MODEL_POLICY_ADDR="+n.modelPolicy,
		"AGENTOS_FEDERATION_ADDR="+n.federation,
		"AGENTOS_FEDERATION_PEER_ADDR="+opFreeAddr(t),
		"AGENTOS_EXECUTORS=2",
		"AGENTOS_NO_SPINNER=1",
	)
	t.Cleanup(func() { n.run("nuke", "--hard", "--yes-really") })
	return n
}

// run executes the agentos binary in the node's directory and returns its
// combined output and exit code.
func (n *opNode) run(args ...string) (string, int) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.bin, args...)
	cmd.Dir = n.dir
	cmd.Env = n.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			n.t.Fatalf("agentos %v: %v", args, err)
		}
	}
	return out.String(), code
}

// home is the node's AGENTOS_HOME (the default ./.agentos).
func (n *opNode) home() string { return filepath.Join(n.dir, ".agentos") }

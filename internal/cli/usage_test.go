package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeTTY is stdin that says it is a terminal, with the typed answer.
type fakeTTY struct{ *strings.Reader }

func (fakeTTY) IsTerminal() bool { return true }

// nukeHome is a home with data (and credentials) to be kept or removed.
func nukeHome(t *testing.T) (home string, run func(stdin string, tty bool, args ...string) (string, int)) {
	t.Helper()
	home = t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(home, "data"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(home, "data", "agentos.db"), []byte("x"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(home, "logs"), 0o700))
	return home, func(stdin string, tty bool, args ...string) (string, int) {
		var out bytes.Buffer
		var in interface{ Read([]byte) (int, error) } = strings.NewReader(stdin)
		if tty {
			in = fakeTTY{strings.NewReader(stdin)}
		}
		args = append(args, "--home", home, "--env-file", filepath.Join(home, "none.env"))
		code := MainIO(args, in, &out, &out)
		return out.String(), code
	}
}

func TestNukeStopsWithoutConfirmationAndKeepsData(t *testing.T) {
	t.Parallel()
	home, run := nukeHome(t)
	out, code := run("", false, "nuke")
	require.Equal(t, 0, code, out)
	require.FileExists(t, filepath.Join(home, "data", "agentos.db"), "plain nuke keeps data")
	require.NoDirExists(t, filepath.Join(home, "logs"))
}

func TestNukeHardConfirmation(t *testing.T) {
	t.Parallel()
	db := func(home string) string { return filepath.Join(home, "data", "agentos.db") }

	// No terminal, no --yes: refused, exit 2, nothing removed.
	home, run := nukeHome(t)
	out, code := run("yes\n", false, "nuke", "--hard")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "stdin is not a terminal to confirm on, so pass --yes")
	require.Contains(t, out, "delete ALL DATA")
	require.FileExists(t, db(home))
	require.DirExists(t, filepath.Join(home, "logs"), "nothing stopped or removed")

	// A terminal answering anything but "yes": aborted, exit 1.
	out, code = run("y\n", true, "nuke", "--hard")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "Type yes to continue")
	require.Contains(t, out, "aborted")
	require.FileExists(t, db(home))

	// A terminal answering yes: removed.
	out, code = run("yes\n", true, "nuke", "--hard")
	require.Equal(t, 0, code, out)
	require.NoFileExists(t, db(home))

	// --yes and the old --yes-really need no terminal.
	for _, flag := range []string{"--yes", "-y", "--yes-really"} {
		home, run := nukeHome(t)
		out, code := run("", false, "nuke", "--hard", flag)
		require.Equal(t, 0, code, flag+": "+out)
		require.NoFileExists(t, db(home), flag)
	}
}

// Usage errors exit 2 in every command, runtime failures 1: one rule in
// the root command.
func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus" for "agentos"`},
		{[]string{"tenants", "bogus"}, `unknown command "bogus" for "agentos tenants"`},
		{[]string{"runs", "frobnicate"}, `unknown command "frobnicate" for "agentos runs"`},
		{[]string{"version", "extra"}, "usage: agentos version"},
		{[]string{"nuke", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"runs", "get"}, "usage: agentos runs get <run_id>"},
		{[]string{"runs", "list", "--limit", "x"}, `invalid argument "x" for "--limit"`},
		{[]string{"runs", "list", "--limit", "0"}, "--limit 0: want 1 to 500"},
		{[]string{"runs", "events", "run_x", "--after", "-1"}, "--after -1"},
		{[]string{"logs"}, "name one service: orchestrator, model-policy or federation"},
		{[]string{"logs", "nope"}, `unknown service "nope"`},
		{[]string{"tokens", "issue"}, "--tenant and --principal are required"},
		{[]string{"agents", "put"}, "-f agent.yaml is required"},
		{[]string{"threads", "run", "thr_x"}, `usage: agentos threads run <thread_id> <agent_id> "text"`},
		{[]string{"threads", "run", "thr_x", "agt_x", "hi", "--strategy", "later"}, `--strategy "later"`},
		{[]string{"threads", "create", "--metadata", "novalue"}, `--metadata "novalue": want key=value`},
		{[]string{"threads", "list", "--limit", "0"}, "--limit 0: want 1 to 500"},
	} {
		var out bytes.Buffer
		args := append(tc.args, "--home", home, "--env-file", filepath.Join(home, "none.env"))
		if tc.args[0] == "bogus" || tc.args[0] == "version" || tc.args[len(tc.args)-1] == "bogus" || tc.args[len(tc.args)-1] == "frobnicate" {
			args = tc.args // commands without the config flags
		}
		code := Main(args, &out, &out)
		require.Equal(t, 2, code, "%v: %s", tc.args, out.String())
		require.Contains(t, out.String(), tc.want, tc.args)
	}
	// Help is not an error.
	var out bytes.Buffer
	require.Equal(t, 0, Main([]string{"runs"}, &out, &out), out.String())
	require.Contains(t, out.String(), "events")
}

func TestAgentsPutHelpDescribesTheFile(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.Equal(t, 0, Main([]string{"agents", "put", "--help"}, &out, &out))
	for _, want := range []string{"YAML or JSON", `"agent" key`, "model_ref", "instructions", "tools", "defaults", "max_steps",
		"on_tool_error", "agentos agents put -f support.yaml", "agent_id: agt_support_v1"} {
		require.Contains(t, out.String(), want)
	}
	// The example in the help is a file put accepts.
	help := out.String()
	start := strings.Index(help, "agent_id: agt_support_v1")
	end := strings.Index(help, "  YAML\n")
	require.Greater(t, end, start)
	var doc strings.Builder
	for _, l := range strings.Split(help[start-2:end], "\n") {
		doc.WriteString(strings.TrimPrefix(l, "  ") + "\n")
	}
	id, spec, err := ParseAgentFile([]byte(doc.String()))
	require.NoError(t, err, doc.String())
	require.Equal(t, "agt_support_v1", id)
	require.Equal(t, "tier:fast", spec["model_ref"])
}

package config

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSettingsTableIsComplete keeps docs/operations.md's one table of
// settings ("Settings") and Load in step: every variable Load reads has a
// row, and every row names a variable Load reads.
func TestSettingsTableIsComplete(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("config.go")
	require.NoError(t, err)
	loaded := map[string]bool{}
	for _, m := range regexp.MustCompile(`"(AGENTOS_[A-Z0-9_]+)"`).FindAllStringSubmatch(string(src), -1) {
		loaded[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`secret\("(AGENTOS_[A-Z0-9_]+)"\)`).FindAllStringSubmatch(string(src), -1) {
		loaded[m[1]+"_FILE"] = true
	}
	require.Contains(t, loaded, "AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE", "the scan of config.go works")

	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(doc), "\n## Settings\n")
	require.True(t, ok, `docs/operations.md has no "## Settings" section`)
	section, _, _ = strings.Cut(section, "\n## ")
	documented := map[string]bool{}
	name := regexp.MustCompile("`(AGENTOS_[A-Z0-9_]+)`")
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			documented[m[1]] = true
		}
	}
	var undocumented, unknown []string
	for k := range loaded {
		if !documented[k] {
			undocumented = append(undocumented, k)
		}
	}
	for k := range documented {
		if !loaded[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(undocumented)
	slices.Sort(unknown)
	require.Empty(t, undocumented, "settings Load reads that docs/operations.md's Settings table lacks")
	require.Empty(t, unknown, "rows of docs/operations.md's Settings table that Load does not read")
}

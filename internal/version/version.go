// Package version holds build information, set with -ldflags at release time.
package version

import (
	"os"
	"runtime/debug"
	"time"
)

// Version is the AgentOS semantic version.
var Version = "0.1.0"

// GitSHA is the commit the binary was built from ("unknown" when not stamped).
var GitSHA = ""

// BuildTime is when the binary was built (RFC3339, may be empty).
var BuildTime = ""

// SHA returns GitSHA, falling back to the VCS info Go embeds.
func SHA() string {
	if GitSHA != "" {
		return GitSHA
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// Time returns the build time in RFC 3339 (UTC): BuildTime when stamped,
// else the commit time Go embeds, else the executable's modification time.
// Peer info publishes it, and the original API requires a date-time there.
func Time() string {
	if BuildTime != "" {
		return BuildTime
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" && s.Value != "" {
				return s.Value
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		if fi, err := os.Stat(exe); err == nil {
			return fi.ModTime().UTC().Format(time.RFC3339)
		}
	}
	return time.Unix(0, 0).UTC().Format(time.RFC3339)
}

// Package version holds build information, set with -ldflags at release time.
package version

import "runtime/debug"

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

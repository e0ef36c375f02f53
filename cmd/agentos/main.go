// Command agentos is the AgentOS node binary and operator CLI.
package main

import (
	"os"

	"github.com/nexixai/agentos/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

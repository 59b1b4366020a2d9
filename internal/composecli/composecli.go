// Package composecli runs the docker compose v2 CLI on the compose files
// servicelive writes, for the interop tests: the files must stay usable by
// hand (`docker -H <host> compose -p <project> -f <file> up -d` reproduces a
// scope and changes nothing).
//
// The CLI is the binary $SERVICELIVE_COMPOSE_CLI names; .ci/run sets it to
// what .ci/compose-cli builds (compose v2.40.3, from the Go module proxy).
// Without it a test that needs the CLI is skipped with a message, and fails
// when CI=true: CI never passes without having run it.
package composecli

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Env names the environment variable holding the CLI's path.
const Env = "SERVICELIVE_COMPOSE_CLI"

// CLI is a docker compose v2 binary.
type CLI struct{ path string }

// Require returns the CLI named by $SERVICELIVE_COMPOSE_CLI, skipping tb
// without it (failing it when CI=true).
func Require(tb testing.TB) *CLI {
	tb.Helper()
	path := os.Getenv(Env)
	if path == "" {
		msg := Env + " is not set: no docker compose v2 CLI for the interop check (bash .ci/compose-cli builds one and prints its path)"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("%s: %v", Env, err)
	}
	return &CLI{path: path}
}

// Run runs `compose -p project -f file args...` against the engine at host
// (a DOCKER_HOST value) and returns its combined output.
func (c *CLI) Run(ctx context.Context, host, project, file string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.path, append([]string{"-p", project, "-f", file}, args...)...)
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_HOST=") && !strings.HasPrefix(kv, "DOCKER_CONTEXT=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "DOCKER_HOST="+host, "COMPOSE_PROGRESS=plain", "COMPOSE_ANSI=never")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

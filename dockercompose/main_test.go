package dockercompose_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trapMarker is the file every trap executable appends to when run.
var trapMarker string

// TestMain runs the package's tests in a trapped environment: a docker
// config dir whose config names a credential helper, a "builder" alias and
// a docker-buildx plugin, and a PATH whose first directory holds docker,
// docker-buildx, docker-credential-*, git and ssh executables. Each trap
// records its run in a marker file; the library must never run any of them
// (it must never start a subprocess), which TestNoSubprocess and the end of
// TestMain check. The config dir is set before any test runs because
// docker/cli reads DOCKER_CONFIG once per process.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sltest-traps-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if err := setupTraps(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		code := m.Run()
		if b, err := os.ReadFile(trapMarker); err == nil {
			fmt.Fprintf(os.Stderr, "FAIL: the library started subprocesses:\n%s", b)
			return 1
		}
		return code
	}()
	os.Exit(code)
}

func setupTraps(dir string) error {
	trapMarker = filepath.Join(dir, "marker")
	cfgDir := filepath.Join(dir, "config")
	pluginDir := filepath.Join(cfgDir, "cli-plugins")
	extraDir := filepath.Join(dir, "extra-plugins")
	binDir := filepath.Join(dir, "bin")
	for _, d := range []string{pluginDir, extraDir, binDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	script := "#!/bin/sh\necho \"$0 $*\" >> '" + trapMarker + "'\nexit 1\n"
	traps := map[string][]string{
		pluginDir: {"docker-buildx", "docker-compose", "docker-model"},
		extraDir:  {"docker-buildx"},
		binDir:    {"docker", "docker-buildx", "docker-credential-sltest", "docker-credential-pass", "docker-credential-secretservice", "git", "ssh"},
	}
	for d, names := range traps {
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(d, n), []byte(script), 0o755); err != nil {
				return err
			}
		}
	}
	cfg := `{
  "auths": {},
  "credsStore": "sltest",
  "credHelpers": {"docker.io": "sltest", "registry-1.docker.io": "sltest"},
  "aliases": {"builder": "buildx"},
  "cliPluginsExtraDirs": ["` + extraDir + `"]
}`
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(cfg), 0o644); err != nil {
		return err
	}
	for k, v := range map[string]string{
		"DOCKER_CONFIG":   cfgDir,
		"PATH":            binDir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"DOCKER_BUILDKIT": "",
		"DOCKER_CONTEXT":  "",
	} {
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	return nil
}

// trapped returns what the traps recorded, "" when nothing ran.
func trapped() string {
	b, _ := os.ReadFile(trapMarker)
	return strings.TrimSpace(string(b))
}

// Package testimage builds servicelive's tiny test image on a Docker Engine
// with no registry: a static Go program (package app beside this file) copied
// into a FROM scratch image through the Engine API's classic builder, which
// needs no pull. One image serves every role; the container's command picks
// the mode:
//
//	testimage.ModeBase   stays up until SIGTERM (a decky's base)
//	testimage.ModeBanner writes a banner on TCP port $PORT (a honeypot service)
//	testimage.ModeFail   prints FailMessage to stderr and exits 1
//
// and, run by `docker exec` inside a container, ModeProbe, ModeForkBomb and
// ModeKill1 probe its hardening from inside (see package app).
//
// Tests, the benchmark and the quickstart example share it:
//
//	ref, err := testimage.Ensure(ctx, apiClient)
//	// service.Image = ref; service.Command = testimage.Command(testimage.ModeBanner)
//
// The image is tagged with a hash of its content ("servicelive-test:<hash12>"),
// so Ensure builds it once per engine and program version. Building the binary
// runs the go toolchain (`go build`), so the module's source and a Go
// toolchain must be at hand: this package is test and demo setup, never
// library code.
package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/jsonmessage"
)

// Modes of the test program, passed as the container's command (see Command).
const (
	ModeBase   = "base"   // stay up until SIGTERM or SIGINT, then exit 0
	ModeBanner = "banner" // serve Banner (or $BANNER) on TCP port $PORT
	ModeFail   = "fail"   // print FailMessage (or $FAIL_MESSAGE) to stderr, exit 1

	// ModeProbe (exec'd, args: extra directories) prints a JSON object: the
	// uid, the outcome of writing a file in /, /tmp and each directory, and
	// the Cap* and NoNewPrivs lines of /proc/self/status and /proc/1/status.
	ModeProbe = "probe"
	// ModeForkBomb (exec'd, arg: the most children, default 4096) forks
	// single-task children until fork fails, prints {"forked", "err",
	// "errno"}, then kills and reaps them.
	ModeForkBomb = "forkbomb"
	// ModeKill1 (exec'd) sends SIGTERM to PID 1, the container's main process.
	ModeKill1 = "kill1"
	// ModeAppend appends a line to files: "/app append TEXT FILE...", exit 0
	// (a RUN step of a Dockerfile built on the image, which has no shell).
	ModeAppend = "append"
)

// Defaults of the test program.
const (
	// Repository is the image repository Ensure tags its image in.
	Repository = "servicelive-test"
	// DefaultPort is the TCP port banner mode listens on when $PORT is unset.
	DefaultPort = 2222
	// Banner is what banner mode writes to each connection when $BANNER is unset.
	Banner = "SSH-2.0-servicelive-test\r\n"
	// FailMessage is the line fail mode writes to stderr when $FAIL_MESSAGE is unset.
	FailMessage = "servicelive-test: fail mode: exiting with status 1"
	// Label marks every image this package builds (value "1").
	Label = "servicelive.testimage"
)

// Dockerfile is the classic-builder Dockerfile of the image: the static
// binary "app" in an empty image, base mode by default.
const Dockerfile = `FROM scratch
COPY app /app
ENTRYPOINT ["/app"]
CMD ["base"]
`

// Command returns the container command that selects mode, e.g.
// Command(ModeBanner) is []string{"banner"}.
func Command(mode string) []string { return []string{mode} }

var (
	mu       sync.Mutex
	binaries = map[string][]byte{} // GOOS/GOARCH → static binary, per process
	ensured  = map[string]bool{}   // engine host + ref → built or found
)

// Ensure makes the test image exist on the engine c talks to and returns its
// reference, "servicelive-test:<hash12>". It compiles the program once per
// process (for the engine's OS and architecture), and builds the image only
// when no image has that tag yet. It is safe for concurrent use.
func Ensure(ctx context.Context, c client.APIClient) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	platform, err := enginePlatform(ctx, c)
	if err != nil {
		return "", err
	}
	bin, err := binaryLocked(ctx, platform)
	if err != nil {
		return "", err
	}
	ref := Repository + ":" + contentHash(bin)
	key := c.DaemonHost() + " " + ref
	if ensured[key] {
		return ref, nil
	}
	if _, err := c.ImageInspect(ctx, ref); err == nil {
		ensured[key] = true
		return ref, nil
	} else if !errdefs.IsNotFound(err) {
		return "", fmt.Errorf("testimage: inspect %s: %w", ref, err)
	}
	if err := buildImage(ctx, c, ref, bin); err != nil {
		return "", err
	}
	ensured[key] = true
	return ref, nil
}

// WriteContext writes a classic-builder build context for the test image into
// dir: Dockerfile and the static binary app, compiled for the engine c talks
// to. Compose services can then use `build: {context: dir}`.
func WriteContext(ctx context.Context, c client.APIClient, dir string) error {
	mu.Lock()
	defer mu.Unlock()
	platform, err := enginePlatform(ctx, c)
	if err != nil {
		return err
	}
	bin, err := binaryLocked(ctx, platform)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(Dockerfile), 0o644); err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app"), bin, 0o755); err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	return nil
}

// enginePlatform returns "os/arch" of the engine, so the binary runs there
// even when the engine is remote.
func enginePlatform(ctx context.Context, c client.APIClient) (string, error) {
	v, err := c.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return "", fmt.Errorf("testimage: engine version: %w", err)
	}
	goos, goarch := v.Os, v.Arch
	if goos == "" {
		goos = "linux"
	}
	switch goarch {
	case "":
		goarch = runtime.GOARCH
	case "x86_64":
		goarch = "amd64"
	case "aarch64":
		goarch = "arm64"
	}
	return goos + "/" + goarch, nil
}

// binaryLocked returns the static test binary for platform, compiling it on
// first use. mu must be held.
func binaryLocked(ctx context.Context, platform string) ([]byte, error) {
	if b, ok := binaries[platform]; ok {
		return b, nil
	}
	goos, goarch, _ := strings.Cut(platform, "/")
	tmp, err := os.MkdirTemp("", "servicelive-testimage-")
	if err != nil {
		return nil, fmt.Errorf("testimage: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "app")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBinary(), "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w", "-o", out, "github.com/decnet/servicelive/internal/testimage/app")
	cmd.Dir = sourceDir()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("testimage: go build: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("testimage: %w", err)
	}
	binaries[platform] = b
	return b, nil
}

// goBinary returns the go command: from PATH, else from $GOROOT/bin (which
// `go run` and `go test` set for the programs they start).
func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// sourceDir returns a directory inside the module, so `go build` resolves the
// app package: this file's directory when the source is on disk (it is not
// under -trimpath), else the working directory.
func sourceDir() string {
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Dir(file)
		if _, err := os.Stat(filepath.Join(dir, "app", "main.go")); err == nil {
			return dir
		}
	}
	return ""
}

func contentHash(bin []byte) string {
	h := sha256.New()
	h.Write([]byte(Dockerfile))
	h.Write(bin)
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// buildImage builds ref from Dockerfile and bin with the classic builder.
func buildImage(ctx context.Context, c client.APIClient, ref string, bin []byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte(Dockerfile)},
		{"app", 0o755, bin},
	}
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("testimage: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("testimage: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	res, err := c.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags:        []string{ref},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
		Labels:      map[string]string{Label: "1"},
	})
	if err != nil {
		return fmt.Errorf("testimage: build %s: %w", ref, err)
	}
	defer res.Body.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(res.Body, io.Discard, 0, false, nil); err != nil {
		return fmt.Errorf("testimage: build %s: %w", ref, err)
	}
	if _, err := c.ImageInspect(ctx, ref); err != nil {
		return fmt.Errorf("testimage: build %s: image missing after build: %w", ref, err)
	}
	return nil
}

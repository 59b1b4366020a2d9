// Package dockerdtest starts a second Docker Engine for tests that need two
// real engines (dockercompose.Hosts): a dockerd of its own, with its own
// socket, data root, exec root, pid file and containerd namespace in a
// temporary directory, and a network namespace of its own (no default
// bridge, no iptables rules), so that it leaves the main engine alone.
//
// The network namespace is not optional: a dockerd started with `--bridge
// none` deletes the docker0 interface of its namespace (it "removes the
// default bridge"), and one restarted on its data root deleted it too,
// with any --bridge; in the host's namespace that is the main engine's
// bridge. Its networks' bridges and routes stay in its namespace as well,
// which goes away with it. Its socket is a file: reachable from the host. The test image is copied into it from the
// main engine (save there, load here, through the Engine API): nothing is
// pulled.
//
// A test package starts it once, on first use, and stops it in TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(dockerdtest.Main(m)) }
//	func TestX(t *testing.T) { d, image := dockerdtest.Require(t); ... }
//
// Without root or a dockerd binary the test is skipped — and fails when
// CI=true, so that CI never passes by skipping.
package dockerdtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/decnet/servicelive/internal/enginetest"
)

// Daemon is a second dockerd, started by Start.
type Daemon struct {
	Host string // "unix://<Dir>/docker.sock"
	Dir  string // everything of the daemon: config, socket, data and exec roots, pid file, log

	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exited
}

// Start starts a dockerd beside the main engine (main: its API client),
// with the main engine's storage driver, and loads images (references on
// the main engine) into it. Close stops it and removes its directory.
func Start(ctx context.Context, main client.APIClient, images ...string) (*Daemon, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("dockerdtest: a second dockerd needs root")
	}
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		return nil, fmt.Errorf("dockerdtest: %w (install docker.io)", err)
	}
	info, err := main.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, fmt.Errorf("dockerdtest: main engine: %w", err)
	}
	// A short path: the socket's must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "sld-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Host: "unix://" + filepath.Join(dir, "docker.sock"), Dir: dir}
	// The system's daemon.json sets data-root (and more): an empty config
	// file keeps it out.
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o600); err != nil {
		_ = d.Close()
		return nil, err
	}
	ns := filepath.Base(dir)
	d.args = []string{bin,
		"--config-file", filepath.Join(dir, "daemon.json"),
		"--host", d.Host,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--bridge", "none",
		"--iptables=false",
		"--ip-masq=false",
		"--ip-forward=false",
		"--containerd-namespace", ns,
		"--containerd-plugins-namespace", ns + "p",
	}
	if info.Info.Driver != "" {
		d.args = append(d.args, "--storage-driver", info.Info.Driver)
	}
	if err := d.Restart(ctx); err != nil {
		_ = d.Close()
		return nil, err
	}
	if err := d.load(ctx, main, images); err != nil {
		_ = d.Close()
		return nil, err
	}
	return d, nil
}

// Client returns a new API client of the daemon; the caller closes it.
func (d *Daemon) Client() (*client.Client, error) {
	return client.New(client.WithHost(d.Host))
}

// Restart starts the daemon again after Stop (Start starts it the first
// time), on the same directories, and waits until it answers. A running
// daemon is left alone.
func (d *Daemon) Restart(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return nil // running
	}
	logf, err := os.OpenFile(filepath.Join(d.Dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.args[0], d.args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own network namespace (see the package doc), its own process
	// group (a ^C of the test is not its), and SIGTERM when the test
	// process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("dockerdtest: start dockerd: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	d.cmd, d.done = cmd, done

	c, err := d.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			d.cmd = nil
			return fmt.Errorf("dockerdtest: dockerd exited at start:\n%s", d.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerdtest: dockerd did not answer within 60s: %v\n%s", err, d.logTail())
		}
	}
}

// Stop stops the daemon (SIGTERM: it stops its containers; SIGKILL after
// 30 seconds) and keeps its directory: Restart starts it again.
func (d *Daemon) Stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	d.cmd = nil
	return nil
}

// Close stops the daemon, unmounts whatever it left mounted under its
// directory and removes the directory.
func (d *Daemon) Close() error {
	d.clear()
	err := d.Stop()
	if uerr := unmountUnder(d.Dir); uerr != nil {
		err = errors.Join(err, uerr)
	}
	if rerr := os.RemoveAll(d.Dir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// clear removes, on a running daemon, every container and every network
// it created, before it stops.
func (d *Daemon) clear() {
	d.mu.Lock()
	running := d.cmd != nil
	d.mu.Unlock()
	if !running {
		return
	}
	c, err := d.Client()
	if err != nil {
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if cs, err := c.ContainerList(ctx, client.ContainerListOptions{All: true}); err == nil {
		for _, ctr := range cs.Items {
			_, _ = c.ContainerRemove(ctx, ctr.ID, client.ContainerRemoveOptions{Force: true})
		}
	}
	if ns, err := c.NetworkList(ctx, client.NetworkListOptions{}); err == nil {
		for _, n := range ns.Items {
			if n.Name != "bridge" && n.Name != "host" && n.Name != "none" {
				_, _ = c.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
			}
		}
	}
}

// load copies images from the main engine into the daemon.
func (d *Daemon) load(ctx context.Context, main client.APIClient, images []string) error {
	if len(images) == 0 {
		return nil
	}
	c, err := d.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	saved, err := main.ImageSave(ctx, images)
	if err != nil {
		return fmt.Errorf("dockerdtest: save %v: %w", images, err)
	}
	defer saved.Close()
	res, err := c.ImageLoad(ctx, saved, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("dockerdtest: load %v: %w", images, err)
	}
	out, err := io.ReadAll(res)
	res.Close()
	if err != nil {
		return fmt.Errorf("dockerdtest: load %v: %w", images, err)
	}
	if strings.Contains(string(out), `"error`) {
		return fmt.Errorf("dockerdtest: load %v: %s", images, out)
	}
	for _, img := range images {
		if _, err := c.ImageInspect(ctx, img); err != nil {
			return fmt.Errorf("dockerdtest: %s not loaded: %w", img, err)
		}
	}
	return nil
}

// logTail returns the last lines of the daemon's log.
func (d *Daemon) logTail() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dockerd.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// unmountUnder detaches every mount point under dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := strings.ReplaceAll(fields[4], `\040`, " ")
		if strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// shared is the daemon of the test process, started by the first Require.
var shared struct {
	once  sync.Once
	d     *Daemon
	image string
	err   error
}

// Require returns the second engine of the test process (started on first
// use, stopped by Main) with the test image loaded, and that image's
// reference. The main engine is enginetest.Require's. Without a second
// engine the test is skipped, or fails when CI=true.
func Require(t testing.TB) (*Daemon, string) {
	t.Helper()
	main, image := enginetest.Require(t)
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		shared.image = image
		shared.d, shared.err = Start(ctx, main, image)
	})
	if shared.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the second Docker Engine cannot start: %v", shared.err)
		}
		t.Skipf("no second Docker Engine: %v", shared.err)
	}
	return shared.d, shared.image
}

// Main runs the tests and then stops and removes the second engine if one
// was started. Use it from TestMain: os.Exit(dockerdtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared.d != nil {
		if err := shared.d.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "dockerdtest: close:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// CountingClient returns an API client of host (a unix:// socket URL) that
// counts, in *n, every HTTP request it sends, and closes with the client.
func CountingClient(host string, n *Counter) (*client.Client, error) {
	sock, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return nil, fmt.Errorf("dockerdtest: counting client: %q is not a unix socket URL", host)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}, MaxIdleConnsPerHost: 64}
	return client.New(client.WithHost(host), client.WithHTTPClient(&http.Client{Transport: &countingTransport{n: n, rt: tr}}))
}

// Counter counts requests; safe for concurrent use.
type Counter struct {
	mu     sync.Mutex
	n      int
	by     []string                  // method and path of each request
	before func(method, path string) // see Before
}

// Before makes the client call fn with each request's method and path
// before sending it (nil: nothing); fn may block, say to stop the engine.
func (c *Counter) Before(fn func(method, path string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.before = fn
}

// Count returns the number of requests so far.
func (c *Counter) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Requests returns the method and path of each request so far.
func (c *Counter) Requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.by)
}

type countingTransport struct {
	n  *Counter
	rt http.RoundTripper
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.mu.Lock()
	t.n.n++
	t.n.by = append(t.n.by, r.Method+" "+r.URL.Path)
	before := t.n.before
	t.n.mu.Unlock()
	if before != nil {
		before(r.Method, r.URL.Path)
	}
	return t.rt.RoundTrip(r)
}

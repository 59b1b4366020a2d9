// Command quickstart shows servicelive on the local Docker Engine, from
// nothing: it builds its demo image locally (no registry needed), deploys a
// fleet of two deckies, adds an SSH-like service live to one of them, shows
// the containers, connects to the new service through the decky's IP,
// removes it again and tears everything down. Each step prints its duration.
//
//	go run ./examples/quickstart
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/testimage"
)

func main() {
	project := flag.String("project", "slquickstart", "compose project name of the demo fleet")
	verbose := flag.Bool("v", false, "log the library's debug records to stderr")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *project, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// step prints what is being done, runs fn and prints how long it took.
func step(what string, fn func() error) error {
	fmt.Printf("==> %s\n", what)
	start := time.Now()
	err := fn()
	if err != nil {
		fmt.Printf("    failed after %v: %v\n", time.Since(start).Round(time.Millisecond), err)
		return err
	}
	fmt.Printf("    done in %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func run(ctx context.Context, project string, verbose bool) (err error) {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	var composer *dockercompose.Composer
	if err := step("connect to the Docker Engine", func() (err error) {
		composer, err = dockercompose.New(dockercompose.WithLogger(log))
		if err != nil {
			return err
		}
		v, err := composer.Client().ServerVersion(ctx, client.ServerVersionOptions{})
		if err != nil {
			return fmt.Errorf("is a Docker Engine running? %w", err)
		}
		fmt.Printf("    engine %s (API %s) at %s\n", v.Version, v.APIVersion, composer.Client().DaemonHost())
		return nil
	}); err != nil {
		return errors.Join(err, closeComposer(composer))
	}
	defer func() { err = errors.Join(err, composer.Close()) }()

	var image string
	if err := step("build the demo image locally (a static Go program in a FROM scratch image)", func() (err error) {
		image, err = testimage.Ensure(ctx, composer.Client())
		if err == nil {
			fmt.Printf("    image %s\n", image)
		}
		return err
	}); err != nil {
		return err
	}

	// The store: two deckies of the fleet. A real deployment opens a
	// FileStore; the demo keeps its state in memory.
	store := servicelive.NewMemoryStore(map[string][]servicelive.Decky{"": {
		{Name: "web1", Hostname: "web1", Image: image, Services: []string{"http"}},
		{Name: "db1", Hostname: "db1", Image: image},
	}})
	banner := func(text string, port int) func(servicelive.Decky, servicelive.Config, *types.ServiceConfig) {
		return func(d servicelive.Decky, cfg servicelive.Config, s *types.ServiceConfig) {
			b := text
			if v, ok := cfg["banner"].(string); ok {
				b = v
			}
			b += "\r\n"
			p := fmt.Sprint(port)
			s.Command = testimage.Command(testimage.ModeBanner)
			s.Environment = types.MappingWithEquals{"BANNER": &b, "PORT": &p}
		}
	}
	reg, err := servicelive.NewRegistry(
		servicelive.Service{Name: "ssh", Image: image, Ports: []int{22},
			Schema:  []servicelive.Field{{Key: "banner", Type: servicelive.FieldString}},
			Compose: banner("SSH-2.0-OpenSSH_9.6", 22)},
		servicelive.Service{Name: "http", Image: image, Ports: []int{80}, Compose: banner("HTTP/1.1 200 OK", 80)},
	)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "servicelive-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bus := servicelive.NewLocalBus()
	defer bus.Close()
	events, err := bus.Subscribe("decky.>")
	if err != nil {
		return err
	}
	m, err := servicelive.New(store, composer, reg,
		servicelive.WithFleetProject(project),
		servicelive.WithProjectDir(dir),
		servicelive.WithBus(bus),
		servicelive.WithLogger(log))
	if err != nil {
		return err
	}

	// Whatever happens from here on, leave nothing behind.
	defer func() {
		terr := step("tear the fleet down (containers and the project's network)", func() error {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			return m.Teardown(ctx, "")
		})
		err = errors.Join(err, terr)
	}()

	if err := step("deploy the fleet: web1 (with http) and db1", func() error { return m.Deploy(ctx, "") }); err != nil {
		return err
	}
	if err := showContainers(ctx, composer.Client(), project); err != nil {
		return err
	}
	var services []string
	if err := step("add ssh to web1, live (nothing else is touched)", func() (err error) {
		services, err = m.AddService(ctx, servicelive.FleetDecky("web1"), "ssh",
			servicelive.WithConfig(servicelive.Config{"banner": "SSH-2.0-OpenSSH_9.6 servicelive-quickstart"}))
		if err == nil {
			fmt.Printf("    web1 now runs %v; compose file %s\n", services, filepath.Join(dir, project, "compose.yaml"))
		}
		return err
	}); err != nil {
		return err
	}
	printEvents(events)
	if err := showContainers(ctx, composer.Client(), project); err != nil {
		return err
	}
	if err := step("connect to ssh through web1's IP", func() error {
		return hitService(ctx, composer.Client(), project+".web1", 22)
	}); err != nil {
		return err
	}
	if err := step("remove ssh from web1", func() (err error) {
		services, err = m.RemoveService(ctx, servicelive.FleetDecky("web1"), "ssh")
		if err == nil {
			fmt.Printf("    web1 now runs %v\n", services)
		}
		return err
	}); err != nil {
		return err
	}
	printEvents(events)
	return showContainers(ctx, composer.Client(), project)
}

func closeComposer(c *dockercompose.Composer) error {
	if c == nil {
		return nil
	}
	return c.Close()
}

// showContainers lists the project's containers with their state, found by
// the compose project label.
func showContainers(ctx context.Context, c client.APIClient, project string) error {
	res, err := c.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", "com.docker.compose.project="+project),
	})
	if err != nil {
		return err
	}
	rows := make([]string, 0, len(res.Items))
	for _, ct := range res.Items {
		name := strings.TrimPrefix(slices.Min(ct.Names), "/")
		rows = append(rows, fmt.Sprintf("    %-28s %-10s %s", name, ct.State, ct.ID[:12]))
	}
	slices.Sort(rows)
	fmt.Printf("    %-28s %-10s %s\n", "CONTAINER", "STATE", "ID")
	for _, r := range rows {
		fmt.Println(r)
	}
	return nil
}

// hitService connects to port on the IP of the base container and prints
// the banner it answers with.
func hitService(ctx context.Context, c client.APIClient, base string, port int) error {
	res, err := c.ContainerInspect(ctx, base, client.ContainerInspectOptions{})
	if err != nil {
		return err
	}
	var ip string
	for _, n := range res.Container.NetworkSettings.Networks {
		if n != nil && n.IPAddress.IsValid() {
			ip = n.IPAddress.String()
		}
	}
	if ip == "" {
		return fmt.Errorf("%s has no IP address", base)
	}
	addr := net.JoinHostPort(ip, fmt.Sprint(port))
	var d net.Dialer
	var conn net.Conn
	for range 50 { // the service may still be binding its port
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err = d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	fmt.Printf("    %s answered: %q\n", addr, strings.TrimSpace(line))
	return nil
}

// printEvents prints the events received so far.
func printEvents(sub *servicelive.Subscription) {
	for {
		select {
		case e := <-sub.C():
			fmt.Printf("    event %s services=%v\n", e.Topic(), e.Services)
		default:
			return
		}
	}
}

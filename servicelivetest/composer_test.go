package servicelivetest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"go.uber.org/goleak"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// project returns a compose project named name holding the given services.
func project(name string, services ...string) *types.Project {
	p := &types.Project{Name: name, Services: types.Services{}}
	for _, s := range services {
		p.Services[s] = types.ServiceConfig{Name: s}
	}
	return p
}

func assertRunning(t *testing.T, c *servicelivetest.Composer, want ...string) {
	t.Helper()
	if got := c.Running(); !slices.Equal(got, want) {
		t.Errorf("Running() = %q, want %q", got, want)
	}
}

func ops(calls []servicelivetest.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = string(c.Op) + " " + c.Project + "/" + c.Service
	}
	return out
}

func TestComposerRecordsCalls(t *testing.T) {
	var c servicelivetest.Composer // the zero value is ready
	ctx := context.Background()
	fleet := project("decnet", "web1", "web1-ssh", "web1-http")
	if err := c.Up(ctx, fleet, "web1-ssh"); err != nil {
		t.Fatalf("Up: %v", err)
	}
	if err := c.Down(ctx, fleet, "web1-ssh"); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if err := c.RemoveProject(ctx, fleet); err != nil {
		t.Fatalf("RemoveProject: %v", err)
	}
	sorted := []string{"web1", "web1-http", "web1-ssh"}
	want := []servicelivetest.Call{
		{Op: servicelivetest.OpUp, Project: "decnet", Service: "web1-ssh", Services: sorted, Spec: fleet},
		{Op: servicelivetest.OpDown, Project: "decnet", Service: "web1-ssh", Services: sorted, Spec: fleet},
		{Op: servicelivetest.OpRemoveProject, Project: "decnet", Services: sorted, Spec: fleet},
	}
	got := c.Calls()
	if len(got) != len(want) {
		t.Fatalf("Calls() = %q, want %q", ops(got), ops(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Op != w.Op || g.Project != w.Project || g.Service != w.Service ||
			!slices.Equal(g.Services, w.Services) || g.Spec != w.Spec {
			t.Errorf("call %d = %+v, want %+v", i, g, w)
		}
	}
	if servicelivetest.OpUp != "up" || servicelivetest.OpDown != "down" || servicelivetest.OpRemoveProject != "remove_project" {
		t.Error("op constants changed")
	}

	// Calls returns a copy.
	got[0].Services[0] = "mutated"
	got[0].Op = "mutated"
	if again := c.Calls(); again[0].Op != "up" || again[0].Services[0] != "web1" {
		t.Errorf("changing Calls()'s result changed the record: %+v", again[0])
	}
	// Services is a snapshot taken at call time.
	delete(fleet.Services, "web1")
	if again := c.Calls(); !slices.Equal(again[0].Services, sorted) {
		t.Errorf("Services = %q after the project changed, want the snapshot %q", again[0].Services, sorted)
	}
}

func TestComposerValidatesLikeAnEngine(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		call func(c *servicelivetest.Composer) error
		want error
	}{
		{"up unknown service", func(c *servicelivetest.Composer) error {
			return c.Up(ctx, project("decnet", "web1"), "web1-ssh")
		}, servicelivetest.ErrNoSuchService},
		{"down unknown service", func(c *servicelivetest.Composer) error {
			return c.Down(ctx, project("decnet", "web1"), "web1-ssh")
		}, servicelivetest.ErrNoSuchService},
		{"up nil project", func(c *servicelivetest.Composer) error {
			return c.Up(ctx, nil, "web1-ssh")
		}, nil},
		{"remove nil project", func(c *servicelivetest.Composer) error {
			return c.RemoveProject(ctx, nil)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c servicelivetest.Composer
			err := tt.call(&c)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v does not match %v", err, tt.want)
			}
			if len(c.Calls()) != 1 {
				t.Errorf("%d calls recorded, want the failed call recorded", len(c.Calls()))
			}
			assertRunning(t, &c)
		})
	}
}

// deckyProject returns a compose project named name holding decky's base
// and, joining its network namespace as servicelive renders them, the
// given services of it.
func deckyProject(name, decky string, services ...string) *types.Project {
	p := project(name, decky)
	for _, s := range services {
		key := decky + "-" + s
		sc := types.ServiceConfig{Name: key}
		sc.NetworkMode = "service:" + decky
		p.Services[key] = sc
	}
	return p
}

func TestComposerStrict(t *testing.T) {
	ctx := context.Background()
	fleet := deckyProject("decnet", "web1", "ssh")
	lab := deckyProject("decnet_t__lab", "web1", "ssh")

	var c servicelivetest.Composer // the zero value is strict
	err := c.Up(ctx, fleet, "web1-ssh")
	if !errors.Is(err, servicelivetest.ErrBaseNotRunning) {
		t.Fatalf("Up of a service before its base = %v, want ErrBaseNotRunning", err)
	}
	const want = `servicelivetest: up web1-ssh in project "decnet": base not running: web1 has no container (network_mode service:web1); deploy the decky first`
	if err.Error() != want {
		t.Errorf("error = %q\nwant      %q", err, want)
	}
	assertRunning(t, &c) // refused: nothing made
	if got := c.Ops(); !slices.Equal(got, []string{"up decnet web1-ssh"}) {
		t.Errorf("Ops() = %q: the refused call must be recorded", got)
	}

	// The base of another project does not count.
	if err := c.Up(ctx, lab, "web1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Up(ctx, fleet, "web1-ssh"); !errors.Is(err, servicelivetest.ErrBaseNotRunning) {
		t.Fatalf("Up with the base up in another project only = %v, want ErrBaseNotRunning", err)
	}

	// Base first, then the service: as Deploy does.
	if err := c.Up(ctx, fleet, "web1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Up(ctx, fleet, "web1-ssh"); err != nil {
		t.Fatalf("Up with the base running = %v", err)
	}

	// A paused base keeps its namespace; a stopped one does not.
	for state, ok := range map[string]bool{"paused": true, "exited": false, "created": false, "restarting": false, "dead": false} {
		c.SetState("decnet", "web1", state)
		err := c.Up(ctx, fleet, "web1-ssh")
		if (err == nil) != ok || (!ok && !errors.Is(err, servicelivetest.ErrBaseNotRunning)) {
			t.Errorf("Up with the base %s = %v, want success %v", state, err, ok)
		}
		if !ok && !strings.Contains(err.Error(), "web1 is "+state) {
			t.Errorf("error %q does not name the base's state", err)
		}
	}

	// Down never needs the base, and nothing to remove is not an error.
	c.SetState("decnet", "web1", "")
	for range 2 {
		if err := c.Down(ctx, fleet, "web1-ssh"); err != nil {
			t.Fatalf("Down = %v", err)
		}
	}
	// A service without network_mode service:… needs nothing.
	if err := c.Up(ctx, project("decnet", "solo"), "solo"); err != nil {
		t.Fatalf("Up of a standalone service = %v", err)
	}

	t.Run("lenient", func(t *testing.T) {
		c := servicelivetest.Composer{Lenient: true}
		if err := c.Up(ctx, fleet, "web1-ssh"); err != nil {
			t.Fatalf("lenient Up without the base = %v", err)
		}
		assertRunning(t, &c, "web1-ssh")
	})
}

func TestComposerOps(t *testing.T) {
	ctx := context.Background()
	fleet := deckyProject("decnet", "web1", "ssh")
	var c servicelivetest.Composer
	if got := c.Ops(); got == nil || len(got) != 0 {
		t.Errorf("Ops() of a new Composer = %#v, want empty", got)
	}
	c.FailNext(servicelivetest.OpDown, errors.New("boom"))
	_ = c.Up(ctx, fleet, "web1")
	_ = c.Up(ctx, fleet, "web1-ssh")
	_ = c.Down(ctx, fleet, "web1-ssh") // fails: listed all the same
	_ = c.RemoveProject(ctx, fleet)
	want := []string{"up decnet web1", "up decnet web1-ssh", "down decnet web1-ssh", "remove_project decnet"}
	if got := c.Ops(); !slices.Equal(got, want) {
		t.Errorf("Ops() = %q, want %q", got, want)
	}
	for i, call := range c.Calls() {
		if call.String() != want[i] {
			t.Errorf("Calls()[%d].String() = %q, want %q", i, call, want[i])
		}
	}
	c.Reset()
	if got := c.Ops(); len(got) != 0 {
		t.Errorf("Ops() after Reset = %q", got)
	}
}

func TestComposerOpType(t *testing.T) {
	// The constants are typed, and an untyped constant still converts.
	var op servicelivetest.Op = "up"
	if op != servicelivetest.OpUp || servicelivetest.OpRemoveProject != "remove_project" || servicelivetest.OpContainers != "containers" {
		t.Error("op constants changed")
	}
	var c servicelivetest.Composer
	c.FailNext("down", errors.New("x"))
	c.FailOn("up", "a", errors.New("y"))

	// FailNext(OpContainers) fails the next Containers only.
	boom := errors.New("list failed")
	c.FailNext(servicelivetest.OpContainers, boom)
	p := project("decnet", "a")
	if _, err := c.Containers(context.Background(), p); err != boom {
		t.Fatalf("Containers = %v, want %v", err, boom)
	}
	if _, err := c.Containers(context.Background(), p); err != nil {
		t.Fatalf("second Containers = %v", err)
	}
}

func TestComposerRunning(t *testing.T) {
	var c servicelivetest.Composer
	ctx := context.Background()
	fleet := project("decnet", "web1", "web1-ssh", "web1-http")
	lab := project("decnet-lab", "web1", "web1-ssh")
	mustUp := func(p *types.Project, s string) {
		t.Helper()
		if err := c.Up(ctx, p, s); err != nil {
			t.Fatalf("Up(%s, %s): %v", p.Name, s, err)
		}
	}
	assertRunning(t, &c)
	mustUp(fleet, "web1")
	mustUp(fleet, "web1-ssh")
	mustUp(fleet, "web1-ssh") // idempotent
	mustUp(fleet, "web1-http")
	mustUp(lab, "web1-ssh")
	assertRunning(t, &c, "web1", "web1-http", "web1-ssh", "web1-ssh")
	if got := c.RunningIn("decnet"); !slices.Equal(got, []string{"web1", "web1-http", "web1-ssh"}) {
		t.Errorf("RunningIn(decnet) = %q", got)
	}
	if err := c.Down(ctx, fleet, "web1-http"); err != nil {
		t.Fatal(err)
	}
	if err := c.Down(ctx, fleet, "web1-http"); err != nil { // not running: not an error
		t.Fatalf("Down of a stopped service: %v", err)
	}
	assertRunning(t, &c, "web1", "web1-ssh", "web1-ssh")
	if err := c.RemoveProject(ctx, fleet); err != nil {
		t.Fatal(err)
	}
	assertRunning(t, &c, "web1-ssh")
	if got := c.RunningIn("decnet-lab"); !slices.Equal(got, []string{"web1-ssh"}) {
		t.Errorf("RunningIn(decnet-lab) = %q", got)
	}
	if got := c.RunningIn("nope"); len(got) != 0 {
		t.Errorf("RunningIn(nope) = %q, want none", got)
	}

	// Reset forgets the calls, not what runs.
	c.Reset()
	if n := len(c.Calls()); n != 0 {
		t.Errorf("%d calls after Reset", n)
	}
	assertRunning(t, &c, "web1-ssh")
}

func TestComposerFailNext(t *testing.T) {
	ctx := context.Background()
	p := project("decnet", "a", "b")
	boom1, boom2 := errors.New("boom 1"), errors.New("boom 2")
	var c servicelivetest.Composer
	c.FailNext(servicelivetest.OpUp, boom1)
	c.FailNext(servicelivetest.OpUp, boom2)
	if err := c.Down(ctx, p, "a"); err != nil {
		t.Fatalf("Down: %v; FailNext(up) must not affect down", err)
	}
	if err := c.Up(ctx, p, "a"); err != boom1 {
		t.Fatalf("first Up = %v, want %v", err, boom1)
	}
	if err := c.Up(ctx, p, "b"); err != boom2 {
		t.Fatalf("second Up = %v, want %v", err, boom2)
	}
	assertRunning(t, &c) // failed calls change nothing
	if err := c.Up(ctx, p, "a"); err != nil {
		t.Fatalf("third Up = %v, want success", err)
	}
	assertRunning(t, &c, "a")
	if got := len(c.Calls()); got != 4 {
		t.Errorf("%d calls recorded, want 4", got)
	}

	// A nil error clears the queue.
	c.FailNext(servicelivetest.OpDown, boom1)
	c.FailNext(servicelivetest.OpDown, nil)
	if err := c.Down(ctx, p, "a"); err != nil {
		t.Fatalf("Down after clearing = %v", err)
	}
	// The queued failure wins over a missing service.
	c.FailNext(servicelivetest.OpRemoveProject, boom2)
	if err := c.RemoveProject(ctx, p); err != boom2 {
		t.Fatalf("RemoveProject = %v, want %v", err, boom2)
	}
}

func TestComposerFailOn(t *testing.T) {
	ctx := context.Background()
	p := project("decnet", "a", "b")
	boom := errors.New("boom")
	var c servicelivetest.Composer
	c.FailOn(servicelivetest.OpUp, "a", boom)
	for range 3 {
		if err := c.Up(ctx, p, "a"); err != boom {
			t.Fatalf("Up(a) = %v, want %v", err, boom)
		}
	}
	if err := c.Up(ctx, p, "b"); err != nil {
		t.Fatalf("Up(b) = %v: FailOn(up, a) must not affect b", err)
	}
	if err := c.Down(ctx, p, "a"); err != nil {
		t.Fatalf("Down(a) = %v: FailOn(up, a) must not affect down", err)
	}
	c.FailOn(servicelivetest.OpUp, "a", nil)
	if err := c.Up(ctx, p, "a"); err != nil {
		t.Fatalf("Up(a) after clearing = %v", err)
	}
	assertRunning(t, &c, "a", "b")

	c.FailOn(servicelivetest.OpRemoveProject, "", boom)
	if err := c.RemoveProject(ctx, p); err != boom {
		t.Fatalf("RemoveProject = %v, want %v", err, boom)
	}
	assertRunning(t, &c, "a", "b")
}

func TestComposerUnknownOpPanics(t *testing.T) {
	for name, f := range map[string]func(*servicelivetest.Composer){
		"FailNext": func(c *servicelivetest.Composer) { c.FailNext("start", errors.New("x")) },
		"FailOn":   func(c *servicelivetest.Composer) { c.FailOn("Up", "a", errors.New("x")) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic for an unknown op")
				}
			}()
			f(new(servicelivetest.Composer))
		})
	}
}

func TestComposerHook(t *testing.T) {
	ctx := context.Background()
	p := project("decnet", "a", "b")
	boom := errors.New("boom")
	var c servicelivetest.Composer
	var seen []servicelivetest.Call
	c.SetHook(func(_ context.Context, call servicelivetest.Call) error {
		seen = append(seen, call)
		if call.Service == "b" {
			return boom
		}
		return nil
	})
	if err := c.Up(ctx, p, "a"); err != nil {
		t.Fatalf("Up(a) = %v", err)
	}
	if err := c.Up(ctx, p, "b"); err != boom {
		t.Fatalf("Up(b) = %v, want the hook's error", err)
	}
	assertRunning(t, &c, "a")
	if got := ops(seen); !slices.Equal(got, []string{"up decnet/a", "up decnet/b"}) {
		t.Errorf("hook saw %q", got)
	}
	seen[0].Services[0] = "mutated" // the hook gets a copy
	if c.Calls()[0].Services[0] != "a" {
		t.Error("the hook's Call aliases the record")
	}

	// A panicking hook leaves the Composer usable: no lock is held.
	c.SetHook(func(context.Context, servicelivetest.Call) error { panic("injected") })
	func() {
		defer func() {
			if r := recover(); r != "injected" {
				t.Errorf("recovered %v, want the injected panic", r)
			}
		}()
		_ = c.Down(ctx, p, "a")
	}()
	assertRunning(t, &c, "a")

	// A hook may call the Composer.
	c.SetHook(func(ctx context.Context, call servicelivetest.Call) error {
		if call.Op == servicelivetest.OpUp {
			return c.Down(ctx, call.Spec, call.Service)
		}
		return nil
	})
	if err := c.Up(ctx, p, "b"); err != nil {
		t.Fatalf("Up(b) with a re-entrant hook = %v", err)
	}
	c.SetHook(nil)
	if err := c.Up(ctx, p, "b"); err != nil {
		t.Fatalf("Up(b) without a hook = %v", err)
	}
	assertRunning(t, &c, "a", "b")
}

func TestComposerContext(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := project("decnet", "a")

	t.Run("cancelled before the call", func(t *testing.T) {
		var c servicelivetest.Composer
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := c.Up(ctx, p, "a"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Up = %v, want context.Canceled", err)
		}
		if len(c.Calls()) != 1 {
			t.Error("the cancelled call was not recorded")
		}
		assertRunning(t, &c)
	})

	t.Run("cancelled during the delay", func(t *testing.T) {
		var c servicelivetest.Composer
		c.SetDelay(time.Hour)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		t.Cleanup(cancel)
		start := time.Now()
		if err := c.Up(ctx, p, "a"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Up = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Up returned after %v: the delay ignored ctx", d)
		}
		assertRunning(t, &c)
	})

	t.Run("delay elapses", func(t *testing.T) {
		var c servicelivetest.Composer
		const delay = 20 * time.Millisecond
		c.SetDelay(delay)
		start := time.Now()
		if err := c.Up(context.Background(), p, "a"); err != nil {
			t.Fatalf("Up = %v", err)
		}
		if d := time.Since(start); d < delay {
			t.Errorf("Up returned after %v, before the %v delay", d, delay)
		}
		assertRunning(t, &c, "a")
		c.SetDelay(0)
		if err := c.Down(context.Background(), p, "a"); err != nil {
			t.Fatalf("Down = %v", err)
		}
	})
}

func TestComposerConcurrent(t *testing.T) {
	defer goleak.VerifyNone(t)
	var c servicelivetest.Composer
	c.SetDelay(time.Microsecond)
	c.SetHook(func(context.Context, servicelivetest.Call) error { return nil })
	ctx := context.Background()
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		p := project(fmt.Sprintf("p%d", w%3), "a", "b", "c")
		wg.Go(func() {
			for i := range each {
				svc := []string{"a", "b", "c"}[i%3]
				switch i % 5 {
				case 0, 1:
					_ = c.Up(ctx, p, svc)
				case 2:
					_ = c.Down(ctx, p, svc)
				case 3:
					_ = c.RemoveProject(ctx, p)
				case 4:
					c.FailNext(servicelivetest.OpUp, errors.New("x"))
					c.FailOn(servicelivetest.OpDown, svc, errors.New("y"))
					c.FailOn(servicelivetest.OpDown, svc, nil)
					_ = c.Running()
					_ = c.RunningIn(p.Name)
					_ = c.Calls()
				}
			}
		})
	}
	wg.Wait()
	if got, want := len(c.Calls()), workers*each*4/5; got != want {
		t.Errorf("%d calls recorded, want %d", got, want)
	}
}

func ExampleComposer() {
	ctx := context.Background()
	ssh := types.ServiceConfig{Name: "web1-ssh"}
	ssh.NetworkMode = "service:web1" // joins its decky's base, as servicelive renders it
	p := &types.Project{Name: "decnet", Services: types.Services{"web1": {Name: "web1"}, "web1-ssh": ssh}}

	var composer servicelivetest.Composer  // strict, like an engine
	var _ servicelive.Composer = &composer // what the code under test takes

	fmt.Println(composer.Up(ctx, p, "web1-ssh"))
	composer.FailNext(servicelivetest.OpUp, errors.New("engine unavailable"))
	fmt.Println(composer.Up(ctx, p, "web1"))
	fmt.Println(composer.Up(ctx, p, "web1"))
	fmt.Println(composer.Up(ctx, p, "web1-ssh"))
	fmt.Println(composer.Down(ctx, p, "web1-http"))

	for _, op := range composer.Ops() {
		fmt.Println(op)
	}
	fmt.Println("running:", composer.Running())
	// Output:
	// servicelivetest: up web1-ssh in project "decnet": base not running: web1 has no container (network_mode service:web1); deploy the decky first
	// engine unavailable
	// <nil>
	// <nil>
	// servicelivetest: down web1-http in project "decnet": no such service
	// up decnet web1-ssh
	// up decnet web1
	// up decnet web1
	// up decnet web1-ssh
	// down decnet web1-http
	// running: [web1 web1-ssh]
}

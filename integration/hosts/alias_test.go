package hosts_test

import (
	"context"
	"testing"
	"time"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/dockercompose"
	"github.com/decnet/servicelive/internal/enginetest"
)

// TestAliasedEngineStable: one engine under two host names, the default
// ("") and its socket's URL (as `examples/httpapi -engine
// local=unix:///var/run/docker.sock` beside the default engine does). The
// names are aliases: Reconcile finds everything in place and changes
// nothing, pass after pass (it used to see each container twice, once
// "misplaced", and remove it: flapping); a decky moved from one name to the
// other stays where it is; Teardown clears the engine.
func TestAliasedEngineStable(t *testing.T) {
	a, image := enginetest.Require(t)
	local := a.DaemonHost() // a unix:// URL
	project := randomName("slalias")
	store := sl.NewMemoryStore(map[string][]sl.Decky{"": {
		{Name: "d1", Image: image, Services: []string{"ssh"}},
		{Name: "l1", Image: image, Services: []string{"ssh"}, Host: local},
	}})
	hosts, err := dockercompose.NewHosts(nil, dockercompose.WithHost(local), dockercompose.WithStopTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	m, err := sl.New(store, hosts, registry(t, image), sl.WithFleetProject(project), sl.WithProjectDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		removeProject(ctx, t, a, project)
		hosts.Close()
	})
	ctx := t.Context()
	if err := m.Deploy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	before := assertKeys(t, "engine", a, project, "d1", "d1-ssh", "l1", "l1-ssh")
	for i := range 2 {
		rep, err := m.Reconcile(ctx, "")
		if err != nil || rep.Changed() != 0 {
			t.Fatalf("reconcile %d: changed %d, %v: %+v", i+1, rep.Changed(), err, rep.Containers)
		}
		for _, c := range rep.Containers {
			if want := map[bool]string{true: local, false: ""}[c.Decky == "l1"]; c.Host != want {
				t.Errorf("reconcile %d: %s on host %q, want %q", i+1, c.Service, c.Host, want)
			}
		}
	}
	assertUntouched(t, "reconciles", before, assertKeys(t, "engine", a, project, "d1", "d1-ssh", "l1", "l1-ssh"))

	// From one name of the engine to the other: nothing to move.
	if _, err := store.Update(ctx, sl.FleetDecky("l1"), func(d *sl.Decky) error { d.Host = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	if rep, err := m.Reconcile(ctx, ""); err != nil || rep.Changed() != 0 {
		t.Fatalf("reconcile of a move between aliases: changed %d, %v: %+v", rep.Changed(), err, rep.Containers)
	}
	assertUntouched(t, "move between aliases", before, assertKeys(t, "engine", a, project, "d1", "d1-ssh", "l1", "l1-ssh"))

	if err := m.Teardown(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := containers(t, a, project); len(got) != 0 {
		t.Errorf("teardown left %v", keys(got))
	}
}

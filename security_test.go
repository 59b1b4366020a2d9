package servicelive_test

// Security fuzzing of every public entry point that takes names or configs.
// Each target checks, for any input, that no name escapes the project
// directory, that no name or config value injects into a compose field, and
// that no call addresses another scope's containers:
//
//	FuzzAddService     AddService(topology, decky, service, {key: value})
//	FuzzRemoveService  RemoveService(topology, decky, service)
//	FuzzProjectName    ProjectName and the container names it yields
//	FuzzTopologyScope  Add, Remove, Deploy, Reconcile, Teardown, Project of one scope
//
// FuzzHandler (examples/httpapi) fuzzes the admin API in front of them.
//
// Run one for a while with, e.g.:
//
//	go test -run='^$' -fuzz=FuzzAddService -fuzztime=3m .

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	sl "github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// secNames are hostile names for every name position: traversal, path
// separators, control characters, YAML and shell metacharacters, NATS
// wildcards, case, Unicode lookalikes and lengths around the limits.
var secNames = []string{
	"", "web1", "web2", "Lab", "lab", "t1", "old", "web1-ssh", "web2-b", "decnet",
	"../x", "..", ".", "a/b", `a\b`, "/etc/passwd", "web1/../web2", "%2e%2e%2fx",
	"a\x00b", "a\nb: c", "a b", "web1\n", "a\tb",
	"${HOME}", "$(id)", "`id`", "a;rm -rf /", "a|b", "a&b", "'a'", `"a"`,
	"WEB1", "Web1", "SSH",
	"w\u0435b1",      // Cyrillic e
	"web\u00a01",     // no-break space
	"\u212aelvin",    // Kelvin sign, lower-cases to k
	"ssh\u200b",      // zero-width space
	"\uff57\uff45b1", // full-width letters
	"\xff\xfe",       // invalid UTF-8
	"a.b", "*", ">", "-a", "_a", "a_b", "a:b", "a=b", "#a",
	strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("A", 64), strings.Repeat("a", 65),
	strings.Repeat("x", 4096),
}

// secValues are hostile config values: YAML structure, compose
// interpolation, shell, control characters, very long.
var secValues = []string{
	"plain", "2222", "-1", "9999999999999999999999",
	"x\nservices:\n  evil:\n    image: evil", "x\n  privileged: true", "a: b", "{a: b}",
	"&anchor", "*alias", "!!binary aGk=", "|\n  x", "'", `"`, "#", "---",
	"${HOME}", "$${HOME}", "${SECRET:?boom}", "$", "$(id)", "`id`", "a;rm -rf /",
	"a\x00b", "\r\n", "\xff\xfe", "\u2028", "null", "~",
	strings.Repeat("x", 70000),
}

// secHostEnv is the environment the compose files are loaded with, as an
// operator's `docker compose` would see it.
var secHostEnv = []string{"HOME=/home/operator", "SECRET=s3cr3t"}

// secEnvKey is the environment variable a config key is copied into.
func secEnvKey(key string) string { return "SL_" + strings.ToUpper(key) }

// secRegistry: services with String, Text, Int and Enum fields whose Compose
// hooks copy the configuration into environment variables; "rogue" also tries
// to take over the container's identity with its config; "gone" is on a
// decky of the store but not registered.
func secRegistry(t testing.TB) *sl.Registry {
	t.Helper()
	toEnv := func(_ sl.Decky, cfg sl.Config, s *types.ServiceConfig) {
		for k, v := range cfg {
			val := fmt.Sprint(v)
			if s.Environment == nil {
				s.Environment = types.MappingWithEquals{}
			}
			s.Environment[secEnvKey(k)] = &val
		}
	}
	rogue := func(d sl.Decky, cfg sl.Config, s *types.ServiceConfig) {
		toEnv(d, cfg, s)
		v := fmt.Sprint(cfg["name"])
		s.Name = v
		s.ContainerName = v
		s.Hostname = v
		s.NetworkMode = "host"
		s.Networks = map[string]*types.ServiceNetworkConfig{"decnet_lan": nil}
		s.Labels = types.Labels{sl.LabelTopology: v, sl.LabelDecky: v, sl.LabelService: v, "com.docker.compose.project": v}
		s.CustomLabels = types.Labels{"com.docker.compose.project": v}
		s.DependsOn = types.DependsOnConfig{v: {Condition: types.ServiceConditionStarted}}
	}
	reg, err := sl.NewRegistry(
		sl.Service{Name: "ssh", Image: "decnet/ssh", Compose: toEnv, Schema: []sl.Field{
			{Key: "port", Type: sl.FieldInt},
			{Key: "banner", Type: sl.FieldString},
		}},
		sl.Service{Name: "web", Image: "decnet/web", Compose: toEnv, Schema: []sl.Field{
			{Key: "motd", Type: sl.FieldText},
			{Key: "mode", Type: sl.FieldEnum, Enum: []string{"plain", "tls", "a b", "$x"}},
			{Key: "server", Type: sl.FieldString},
		}},
		sl.Service{Name: "rogue", Image: "decnet/rogue", Compose: rogue, Schema: []sl.Field{{Key: "name", Type: sl.FieldString}}},
		sl.Service{Name: "http", Image: "decnet/http"},
		sl.Service{Name: "b-c", Image: "decnet/bc"},
		sl.Service{Name: "c", Image: "decnet/c"},
		sl.Service{Name: "llmnr", Image: "decnet/llmnr", FleetSingleton: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// secDeckies is the store the targets start from: the fleet and topologies
// whose IDs differ only in case ("Lab", "lab"), with deckies named like
// another decky's compose keys ("web2-b" + c against web2 + b-c, "web1-ssh"
// against web1 + ssh), and "old" holding a service no longer registered.
func secDeckies() map[string][]sl.Decky {
	const base = "decnet/base"
	return map[string][]sl.Decky{
		"": {
			{Name: "web1", Hostname: "web1", Image: base, IP: "10.0.0.5", Network: "decnet_lan", Services: []string{"http", "ssh"},
				Config: map[string]sl.Config{"ssh": {"port": 2222, "banner": "SSH-2.0-OpenSSH"}}},
			{Name: "web2", Image: base},
			{Name: "web2-b", Image: base, Services: []string{"c"}},
		},
		"Lab": {{Name: "web1", Image: base, Services: []string{"ssh"}, Config: map[string]sl.Config{"ssh": {"banner": "lab"}}}},
		"lab": {{Name: "web1", Image: base, Services: []string{"web"}, Config: map[string]sl.Config{"web": {"mode": "tls"}}}},
		"t1":  {{Name: "web1", Image: base}, {Name: "web1-ssh", Image: base, Services: []string{"rogue"}}},
		"old": {{Name: "web1", Image: base, Services: []string{"gone", "http"}}},
	}
}

// secEnv is a Manager over fakes writing compose files under dir, which
// starts as a copy of the files of every scope of secDeckies.
type secEnv struct {
	m        *sl.Manager
	mem      *sl.MemoryStore
	composer *servicelivetest.Composer
	reg      *sl.Registry
	root     string   // a fresh directory holding dir two levels down,
	dir      string   // the project directory: an escape of one or two levels lands in root
	scopes   []string // the store's topologies, "" (the fleet) first
}

// secTemplate writes the compose files of every scope of secDeckies once
// (Deploy), for newSecEnv to copy: writing them costs fsyncs.
func secTemplate(f *testing.F) string {
	dir := secTempDir(f)
	m, err := sl.New(sl.NewMemoryStore(secDeckies()), &servicelivetest.Composer{}, secRegistry(f), sl.WithProjectDir(dir))
	if err != nil {
		f.Fatal(err)
	}
	for _, scope := range slices.Sorted(maps.Keys(secDeckies())) {
		err := m.Deploy(context.Background(), scope)
		if scope == "old" { // "gone" cannot be brought up; the files are written first
			if !errors.Is(err, sl.ErrInvalidService) {
				f.Fatalf("deploy old: %v", err)
			}
			continue
		}
		if err != nil {
			f.Fatalf("deploy %q: %v", scope, err)
		}
	}
	return dir
}

// secTempDir returns a directory removed at the end of the test: on tmpfs
// when there is one, since every compose file write is fsynced and the
// targets write thousands of them.
func secTempDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "servicelive-fuzz-*"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

func newSecEnv(t testing.TB, template string) *secEnv {
	t.Helper()
	seed := secDeckies()
	e := &secEnv{
		mem:      sl.NewMemoryStore(seed),
		composer: &servicelivetest.Composer{Lenient: true},
		reg:      secRegistry(t),
		root:     secTempDir(t),
		scopes:   slices.Sorted(maps.Keys(seed)),
	}
	e.dir = filepath.Join(e.root, "var", "projects")
	if err := os.CopyFS(e.dir, os.DirFS(template)); err != nil {
		t.Fatal(err)
	}
	m, err := sl.New(e.mem, e.composer, e.reg, sl.WithProjectDir(e.dir))
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	return e
}

// snapshot returns every scope's deckies, empty slices and maps as nil.
func (e *secEnv) snapshot(t testing.TB) map[string][]sl.Decky {
	t.Helper()
	out := make(map[string][]sl.Decky, len(e.scopes))
	for _, scope := range e.scopes {
		ds, err := e.mem.List(context.Background(), scope)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ds {
			ds[i] = secNormal(ds[i])
		}
		out[scope] = ds
	}
	return out
}

func secNormal(d sl.Decky) sl.Decky {
	if len(d.Services) == 0 {
		d.Services = nil
	}
	if len(d.Config) == 0 {
		d.Config = nil
	}
	return d
}

// files returns the content of every regular file under root, by path.
func (e *secEnv) files(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(e.root, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		out[path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkTree asserts that every file and directory under root is inside the
// project directory once symlinks are resolved, is not a symlink, and has
// the layout <project>/compose.yaml, <project>/deckies/<decky>.yaml, with
// <project> the project of one of the store's scopes and <decky> a valid
// decky name of that scope.
func (e *secEnv) checkTree(t testing.TB) {
	t.Helper()
	root, err := filepath.EvalSymlinks(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	// Above the project directory: only the directories leading to it.
	above, err := os.ReadDir(e.root)
	if err != nil {
		t.Fatal(err)
	}
	if len(above) != 1 || above[0].Name() != "var" || !above[0].IsDir() {
		t.Errorf("written above the project directory: %v", above)
	}
	if above, err = os.ReadDir(filepath.Dir(e.dir)); err != nil || len(above) != 1 || above[0].Name() != "projects" || !above[0].IsDir() {
		t.Errorf("written beside the project directory: %v %v", above, err)
	}
	projects := map[string]string{}
	for _, scope := range e.scopes {
		projects[e.m.ProjectName(scope)] = scope
	}
	err = filepath.WalkDir(e.dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.Type()&fs.ModeSymlink != 0 {
			t.Errorf("symlink under the project directory: %s", path)
		}
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, real)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
			t.Errorf("%s resolves outside the project directory (%q, %v)", path, rel, err)
			return nil
		}
		if rel == "." {
			return nil
		}
		parts := strings.Split(rel, string(filepath.Separator))
		scope, ok := projects[parts[0]]
		switch {
		case !ok:
			t.Errorf("%s: %q is not the project of a scope of the store", path, parts[0])
		case len(parts) == 1:
			if !de.IsDir() {
				t.Errorf("%s: not a directory", path)
			}
		case len(parts) == 2 && parts[1] == "compose.yaml":
			if !de.Type().IsRegular() {
				t.Errorf("%s: not a regular file", path)
			}
		case len(parts) == 2 && parts[1] == "deckies":
			if !de.IsDir() {
				t.Errorf("%s: not a directory", path)
			}
		case len(parts) == 3 && parts[1] == "deckies":
			decky, ok := strings.CutSuffix(parts[2], ".yaml")
			if !ok || !sl.ValidDeckyName(decky) || !de.Type().IsRegular() {
				t.Errorf("%s: not <decky>.yaml", path)
			} else if _, err := e.mem.Get(context.Background(), sl.Ref{Topology: scope, Decky: decky}); err != nil {
				t.Errorf("%s: decky %q is not in scope %q: %v", path, decky, scope, err)
			}
		default:
			t.Errorf("unexpected path %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// secSentinels returns the sentinels err matches.
func secSentinels(err error) []error {
	var out []error
	for _, s := range []error{sl.ErrNotFound, sl.ErrConflict, sl.ErrInvalidService} {
		if errors.Is(err, s) {
			out = append(out, s)
		}
	}
	return out
}

// secCheckKind asserts that err matches exactly want (nil: err is nil).
func secCheckKind(t testing.TB, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("err = %v, want success", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("err = nil, want %v", want)
	}
	if got := secSentinels(err); len(got) != 1 || got[0] != want {
		t.Fatalf("err = %v matches %v, want exactly %v", err, got, want)
	}
	if !strings.HasPrefix(err.Error(), "servicelive: ") {
		t.Errorf("message %q lacks the package prefix", err)
	}
}

// secWantEnv is the environment the hooks derive from a validated config.
func secWantEnv(cfg sl.Config) map[string]string {
	out := map[string]string{}
	for k, v := range cfg {
		out[secEnvKey(k)] = fmt.Sprint(v)
	}
	return out
}

func secEnvMap(m types.MappingWithEquals) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v == nil {
			out[k] = "<nil>"
		} else {
			out[k] = *v
		}
	}
	return out
}

// How a checked service was rendered.
type secRender int

const (
	secFull     secRender = iota // by the Manager, registry and hooks applied
	secIdentity                  // by the Manager, identity alone (removal, teardown)
	secFile                      // loaded from a compose file
	secAny                       // by the Manager, either way: identity only checked
)

// checkService asserts that s, the compose service key of a project of
// topology, is exactly what servicelive renders for one decky of deckies:
// its name, container name, labels, network namespace, image, and an
// environment holding the stored config and nothing else (nothing at all
// for an identity rendering).
func (e *secEnv) checkService(t testing.TB, topology, project, key string, s types.ServiceConfig, deckies []sl.Decky, mode secRender) {
	t.Helper()
	decky, service := s.Labels[sl.LabelDecky], s.Labels[sl.LabelService]
	i := slices.IndexFunc(deckies, func(d sl.Decky) bool { return d.Name == decky })
	if i < 0 {
		t.Errorf("%s: %s labelled with decky %q, not in scope %q", project, key, decky, topology)
		return
	}
	d := deckies[i]
	if s.Name != key {
		t.Errorf("%s: service %q is named %q", project, key, s.Name)
	}
	if got, want := s.Labels, (types.Labels{sl.LabelDecky: decky, sl.LabelService: service, sl.LabelTopology: topology}); !maps.Equal(got, want) {
		t.Errorf("%s: %s labels = %q, want %q", project, key, got, want)
	}
	if mode != secFile {
		want := types.Labels{
			"com.docker.compose.project":              project,
			"com.docker.compose.service":              key,
			"com.docker.compose.oneoff":               "False",
			"com.docker.compose.project.working_dir":  filepath.Join(e.dir, project),
			"com.docker.compose.project.config_files": filepath.Join(e.dir, project, "compose.yaml"),
		}
		if !maps.Equal(s.CustomLabels, want) {
			t.Errorf("%s: %s compose labels = %q, want %q", project, key, s.CustomLabels, want)
		}
	}
	if len(s.Command) != 0 || len(s.Entrypoint) != 0 || len(s.Volumes) != 0 || len(s.Ports) != 0 || s.Privileged ||
		s.Pid != "" || s.Ipc != "" || len(s.CapAdd) != 0 || len(s.Devices) != 0 || len(s.Extensions) != 0 {
		t.Errorf("%s: %s has fields servicelive never renders: %+v", project, key, s)
	}
	if service == "" {
		if key != decky || s.ContainerName != project+"."+decky || s.NetworkMode != "" || s.Image != d.Image || len(s.Environment) != 0 {
			t.Errorf("%s: base %s = name %q container %q network_mode %q image %q env %v", project, key, s.Name, s.ContainerName, s.NetworkMode, s.Image, s.Environment)
		}
		return
	}
	if !d.HasService(service) {
		t.Errorf("%s: %s renders service %q, not on decky %s (%v)", project, key, service, decky, d.Services)
	}
	image, wantEnv := "", map[string]string{}
	if svc, ok := e.reg.Lookup(service); ok && mode != secIdentity {
		image, wantEnv = svc.Image, secWantEnv(d.Config[service])
	}
	if mode == secAny && s.Image == "" && len(s.Environment) == 0 {
		image, wantEnv = "", map[string]string{} // an identity rendering
	}
	if key != sl.ServiceKey(decky, service) || s.ContainerName != project+"."+decky+"."+service ||
		s.NetworkMode != "service:"+decky || s.Hostname != "" || len(s.Networks) != 0 || s.Image != image {
		t.Errorf("%s: %s = container %q network_mode %q hostname %q networks %v image %q", project, key, s.ContainerName, s.NetworkMode, s.Hostname, s.Networks, s.Image)
	}
	if dep := slices.Collect(maps.Keys(s.DependsOn)); !slices.Equal(dep, []string{decky}) {
		t.Errorf("%s: %s depends on %v, want [%s]", project, key, dep, decky)
	}
	if got := secEnvMap(s.Environment); !maps.Equal(got, wantEnv) {
		t.Errorf("%s: %s environment = %q, want %q (the stored config, verbatim)", project, key, got, wantEnv)
	}
}

// checkCalls asserts that every project the composer was given since the
// last Reset is scope topology's and renders only deckies of it (deckies:
// the scope as it is or was during the calls).
func (e *secEnv) checkCalls(t testing.TB, topology string, deckies []sl.Decky, mode secRender) []servicelivetest.Call {
	t.Helper()
	project := e.m.ProjectName(topology)
	calls := e.composer.Calls()
	for _, c := range calls {
		p := c.Spec
		if c.Project != project || p == nil || p.Name != project {
			t.Fatalf("%s %s: project %q, want %q of scope %q", c.Op, c.Service, c.Project, project, topology)
		}
		if p.WorkingDir != filepath.Join(e.dir, project) || !slices.Equal(p.ComposeFiles, []string{filepath.Join(e.dir, project, "compose.yaml")}) {
			t.Errorf("%s %s: working dir %q, files %q", c.Op, c.Service, p.WorkingDir, p.ComposeFiles)
		}
		if c.Op != servicelivetest.OpRemoveProject {
			if _, ok := p.Services[c.Service]; !ok {
				t.Errorf("%s %s: not in the project (%v)", c.Op, c.Service, c.Services)
			}
		}
		for key, s := range p.Services {
			e.checkService(t, topology, project, key, s, deckies, mode)
		}
	}
	return calls
}

// load loads the compose.yaml of scope topology as docker compose would,
// and checks that it describes exactly the scope's deckies: their bases and
// services, rendered as servicelive does, config values verbatim in the
// environment.
func (e *secEnv) load(t testing.TB, topology string) {
	t.Helper()
	project := e.m.ProjectName(topology)
	deckies, err := e.mem.List(context.Background(), topology)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(e.dir, project, "compose.yaml")}, cli.WithEnv(secHostEnv))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose file of scope %q does not load: %v", topology, err)
	}
	if p.Name != project {
		t.Errorf("loaded project %q, want %q", p.Name, project)
	}
	want := secKeys(deckies)
	if got := slices.Sorted(maps.Keys(p.Services)); !slices.Equal(got, want) {
		t.Fatalf("compose file of scope %q has services %q, the store %q", topology, got, want)
	}
	for key, s := range p.Services {
		e.checkService(t, topology, project, key, s, deckies, secFile)
	}
}

// checkFiles asserts that only files of project own ("": none) differ
// between before and after.
func (e *secEnv) checkFiles(t testing.TB, own string, before, after map[string]string) {
	t.Helper()
	mine := func(path string) bool {
		return own != "" && strings.HasPrefix(path, filepath.Join(e.dir, own)+string(filepath.Separator))
	}
	for _, path := range slices.Sorted(maps.Keys(before)) {
		if !mine(path) && after[path] != before[path] {
			t.Errorf("file %s changed", path)
		}
	}
	for path := range after {
		if _, ok := before[path]; !ok && !mine(path) {
			t.Errorf("file %s appeared", path)
		}
	}
}

// expectAdd is the oracle of AddService over the snapshot: the sentinel the
// call must match (nil: success) and, on success, the config stored.
func (e *secEnv) expectAdd(snap map[string][]sl.Decky, ref sl.Ref, service string, cfg sl.Config) (sl.Config, error) {
	if (ref.Topology != "" && !sl.ValidTopologyID(ref.Topology)) || !sl.ValidDeckyName(ref.Decky) || !sl.ValidServiceName(service) {
		return nil, sl.ErrInvalidService
	}
	svc, ok := e.reg.Lookup(service)
	if !ok || svc.FleetSingleton {
		return nil, sl.ErrInvalidService
	}
	valid, err := svc.Validate(cfg)
	if err != nil {
		return nil, sl.ErrInvalidService
	}
	scope := snap[ref.Topology]
	key := sl.ServiceKey(ref.Decky, service)
	for _, d := range scope {
		if d.Name == ref.Decky {
			continue
		}
		rest, prefixed := strings.CutPrefix(key, d.Name+"-")
		if d.Name == key || prefixed && d.HasService(rest) {
			return nil, sl.ErrConflict
		}
	}
	i := slices.IndexFunc(scope, func(d sl.Decky) bool { return d.Name == ref.Decky })
	if i < 0 {
		return nil, sl.ErrNotFound
	}
	if scope[i].HasService(service) {
		return nil, sl.ErrConflict
	}
	return valid, nil
}

// loadable reports whether the scope's compose file can load: every service
// on its deckies is registered (an unregistered one has no image).
func (e *secEnv) loadable(topology string) bool {
	ds, _ := e.mem.List(context.Background(), topology)
	for _, d := range ds {
		for _, s := range d.Services {
			if _, ok := e.reg.Lookup(s); !ok {
				return false
			}
		}
	}
	return true
}

// FuzzAddService calls AddService with any topology, decky and service
// names and a one-key config, over a store with colliding names and scopes
// differing only in case. It matches an oracle of the outcome (exactly one
// sentinel, or success); a refusal changes nothing; a success changes the
// store, the engine and the files exactly as expected: one Up in the
// scope's project of only the decky's base and new service, labelled with
// servicelive's identity, and a compose file that loads with compose-go and
// describes exactly the store, config values verbatim in the environment and
// nowhere else. No file is ever written outside the project directory.
func FuzzAddService(f *testing.F) {
	type seed struct{ topology, decky, service, key, value string }
	seeds := []seed{
		{"", "web2", "ssh", "banner", "SSH-2.0"},
		{"", "web2", "ssh", "port", "2222"},
		{"Lab", "web1", "web", "motd", "hello\nworld"},
		{"lab", "web1", "ssh", "banner", "x\nservices:\n  evil:\n    image: evil"},
		{"", "web2", "web", "mode", "tls"},
		{"", "web2", "web", "mode", "$x"},
		{"", "web2", "b-c", "", ""},          // key web2-b-c is web2-b's c
		{"t1", "web1", "ssh", "", ""},        // key web1-ssh is a decky
		{"t1", "web1", "rogue", "name", "x"}, // hook tries to take another identity
		{"Lab", "web1", "rogue", "name", "decnet.web1"},
		{"", "web1", "http", "", ""},          // already on
		{"", "web1", "llmnr", "", ""},         // fleet singleton
		{"", "web2", "gone", "", ""},          // unregistered
		{"nope", "web1", "ssh", "", ""},       // missing topology
		{"LAB", "web1", "ssh", "", ""},        // case-distinct missing topology
		{"", "web2", "ssh", "port", "eighty"}, // bad config
	}
	for _, n := range secNames {
		seeds = append(seeds,
			seed{n, "web1", "ssh", "banner", "b"},
			seed{"", n, "ssh", "banner", "b"},
			seed{"lab", "web1", n, "", ""})
	}
	for _, v := range secValues {
		seeds = append(seeds, seed{"", "web2", "web", "motd", v})
	}
	for _, v := range []string{"${HOME}", "x\nservices:\n evil:", "decnet.web2"} {
		seeds = append(seeds, seed{"", "web2", "ssh", "banner", v}, seed{"", "web2", "rogue", "name", v}, seed{"", "web2", "web", v, v})
	}
	// Values YAML block scalars once mangled (compose files are now JSON).
	for _, v := range []string{"\n 00", "\n\t00", "\n  x\n y", "\n  x\nprivileged: true"} {
		seeds = append(seeds, seed{"", "web2", "web", "motd", v})
	}
	for _, s := range seeds {
		f.Add(s.topology, s.decky, s.service, s.key, s.value)
	}
	template := secTemplate(f)
	f.Fuzz(func(t *testing.T, topology, decky, service, cfgKey, cfgVal string) {
		t.Parallel() // seed corpus only: fuzzing runs one input at a time
		e := newSecEnv(t, template)
		ctx := context.Background()
		snap, filesBefore := e.snapshot(t), e.files(t)
		ref := sl.Ref{Topology: topology, Decky: decky}
		cfg := sl.Config{cfgKey: cfgVal}

		wantCfg, wantErr := e.expectAdd(snap, ref, service, cfg)
		got, err := e.m.AddService(ctx, ref, service, sl.WithConfig(cfg))
		secCheckKind(t, err, wantErr)
		e.checkTree(t)
		after, filesAfter := e.snapshot(t), e.files(t)
		if err != nil {
			if !secEqualStores(snap, after) {
				t.Fatalf("refused add changed the store:\n%+v\n->\n%+v", snap, after)
			}
			if calls := e.composer.Calls(); len(calls) != 0 {
				t.Fatalf("refused add called the composer: %v", callOps(calls))
			}
			e.checkFiles(t, "", filesBefore, filesAfter)
			return
		}

		// The store: the decky gained the service and its validated config, nothing else changed.
		want := maps.Clone(snap)
		want[topology] = slices.Clone(snap[topology])
		i := slices.IndexFunc(want[topology], func(d sl.Decky) bool { return d.Name == decky })
		d := want[topology][i].Clone()
		d.Services = append(d.Services, service)
		if len(wantCfg) > 0 {
			if d.Config == nil {
				d.Config = map[string]sl.Config{}
			}
			d.Config[service] = wantCfg
		}
		want[topology][i] = secNormal(d)
		if !secEqualStores(want, after) {
			t.Fatalf("store after add:\n%+v\nwant:\n%+v", after, want)
		}
		if !slices.Equal(got, d.Services) {
			t.Fatalf("AddService returned %v, want %v", got, d.Services)
		}
		// The engine: one Up, of the new key, in the scope's project.
		calls := e.checkCalls(t, topology, after[topology], secFull)
		if ops := callOps(calls); !slices.Equal(ops, []string{"up " + sl.ServiceKey(decky, service)}) {
			t.Fatalf("composer calls = %v", ops)
		}
		secOnlyDecky(t, calls, decky)
		// The files: only the decky's file of this scope changed; it loads and
		// describes exactly the store.
		e.checkFiles(t, e.m.ProjectName(topology), filesBefore, filesAfter)
		for path := range filesAfter {
			if filesAfter[path] != filesBefore[path] && path != filepath.Join(e.dir, e.m.ProjectName(topology), "deckies", decky+".yaml") {
				t.Errorf("add rewrote %s", path)
			}
		}
		if e.loadable(topology) {
			e.load(t, topology)
		}
	})
}

// FuzzRemoveService is FuzzAddService for RemoveService; the engine gets
// the service's identity only (no registry, no hook, no config).
func FuzzRemoveService(f *testing.F) {
	type seed struct{ topology, decky, service string }
	seeds := []seed{
		{"", "web1", "http"},
		{"", "web1", "ssh"},
		{"", "web2-b", "c"},
		{"Lab", "web1", "ssh"},
		{"lab", "web1", "web"},
		{"t1", "web1-ssh", "rogue"},
		{"old", "web1", "gone"}, // no longer registered
		{"old", "web1", "http"},
		{"", "web2", "ssh"},      // not on
		{"lab", "web1", "ssh"},   // on Lab's web1, not lab's
		{"LAB", "web1", "ssh"},   // missing topology
		{"", "web1", "web1-ssh"}, // a compose key, not a service
		{"", "web1", "b-c"},
	}
	for _, n := range secNames {
		seeds = append(seeds, seed{n, "web1", "ssh"}, seed{"", n, "http"}, seed{"", "web1", n})
	}
	for _, s := range seeds {
		f.Add(s.topology, s.decky, s.service)
	}
	template := secTemplate(f)
	f.Fuzz(func(t *testing.T, topology, decky, service string) {
		t.Parallel() // seed corpus only: fuzzing runs one input at a time
		e := newSecEnv(t, template)
		ctx := context.Background()
		snap, filesBefore := e.snapshot(t), e.files(t)
		ref := sl.Ref{Topology: topology, Decky: decky}

		var wantErr error
		i := slices.IndexFunc(snap[topology], func(d sl.Decky) bool { return d.Name == decky })
		switch {
		case topology != "" && !sl.ValidTopologyID(topology), !sl.ValidDeckyName(decky), !sl.ValidServiceName(service):
			wantErr = sl.ErrInvalidService
		case i < 0:
			wantErr = sl.ErrNotFound
		case !snap[topology][i].HasService(service):
			wantErr = sl.ErrConflict
		}
		got, err := e.m.RemoveService(ctx, ref, service)
		secCheckKind(t, err, wantErr)
		e.checkTree(t)
		after, filesAfter := e.snapshot(t), e.files(t)
		if err != nil {
			if !secEqualStores(snap, after) {
				t.Fatalf("refused remove changed the store:\n%+v\n->\n%+v", snap, after)
			}
			if calls := e.composer.Calls(); len(calls) != 0 {
				t.Fatalf("refused remove called the composer: %v", callOps(calls))
			}
			e.checkFiles(t, "", filesBefore, filesAfter)
			return
		}

		want := maps.Clone(snap)
		want[topology] = slices.Clone(snap[topology])
		d := want[topology][i].Clone()
		d.Services = slices.DeleteFunc(d.Services, func(s string) bool { return s == service })
		delete(d.Config, service)
		want[topology][i] = secNormal(d)
		if !secEqualStores(want, after) {
			t.Fatalf("store after remove:\n%+v\nwant:\n%+v", after, want)
		}
		if !slices.Equal(got, d.Services) {
			t.Fatalf("RemoveService returned %v, want %v", got, d.Services)
		}
		// The composer saw the scope as it was before the removal.
		calls := e.checkCalls(t, topology, snap[topology], secIdentity)
		if ops := callOps(calls); !slices.Equal(ops, []string{"down " + sl.ServiceKey(decky, service)}) {
			t.Fatalf("composer calls = %v", ops)
		}
		secOnlyDecky(t, calls, decky)
		e.checkFiles(t, e.m.ProjectName(topology), filesBefore, filesAfter)
		for path := range filesAfter {
			if filesAfter[path] != filesBefore[path] && path != filepath.Join(e.dir, e.m.ProjectName(topology), "deckies", decky+".yaml") {
				t.Errorf("remove rewrote %s", path)
			}
		}
		if e.loadable(topology) {
			e.load(t, topology)
		}
	})
}

// secOnlyDecky asserts that the projects of calls hold decky's base and
// services only: a mutation never hands the engine another decky.
func secOnlyDecky(t testing.TB, calls []servicelivetest.Call, decky string) {
	t.Helper()
	for _, c := range calls {
		for key, s := range c.Spec.Services {
			if s.Labels[sl.LabelDecky] != decky {
				t.Errorf("%s %s: project holds %s of decky %q", c.Op, c.Service, key, s.Labels[sl.LabelDecky])
			}
		}
	}
}

func secEqualStores(a, b map[string][]sl.Decky) bool {
	return maps.EqualFunc(a, b, func(x, y []sl.Decky) bool {
		return slices.EqualFunc(x, y, func(p, q sl.Decky) bool {
			p, q = secNormal(p), secNormal(q)
			return p.Name == q.Name && p.Hostname == q.Hostname && p.IP == q.IP && p.Image == q.Image &&
				p.Network == q.Network && p.Host == q.Host && slices.Equal(p.Services, q.Services) &&
				reflect.DeepEqual(p.Config, q.Config)
		})
	})
}

// secFleets are fleet project names: the default and names built to look
// like a topology project of another fleet.
var secFleets = []string{"decnet", "decnet-t", "x", "decnet-t-x", "t"}

// secDecodeProject inverts ProjectName: the fleet and topology of a project
// name, or ok false.
func secDecodeProject(name string) (fleet, topology string, ok bool) {
	fleet, rest, found := strings.Cut(name, "_t_")
	if !found {
		return name, "", !strings.Contains(name, "_")
	}
	var b strings.Builder
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c == '_' {
			if i+1 == len(rest) || rest[i+1] < 'a' || rest[i+1] > 'z' {
				return "", "", false
			}
			i++
			c = rest[i] - 'a' + 'A'
		}
		b.WriteByte(c)
	}
	return fleet, b.String(), !strings.Contains(fleet, "_") && b.Len() > 0
}

// FuzzProjectName checks, for any two topology IDs and several fleet
// project names, that every (fleet, scope) has its own valid compose
// project name, never the fleet's, decoding back to it; and that container
// names of different (scope, decky, service) never coincide, each splitting
// back into its project, decky and service.
func FuzzProjectName(f *testing.F) {
	for _, p := range [][2]string{
		{"lab", "Lab"}, {"LAB", "lAB"}, {"a", "A"}, {"a-b", "aB"}, {"t", "T"}, {"x", "t-x"}, {"a-a", "aA"},
		{"_a", "A"}, {"Aa", "aA"}, {strings.Repeat("A", 64), strings.Repeat("a", 64)}, {"0", "00"},
		{"decnet", "t-decnet"}, {"x-y", "X-y"}, {"a", "a"},
	} {
		f.Add(p[0], p[1])
	}
	for _, n := range secNames {
		f.Add(n, "lab")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ctx := context.Background()
		// Derived names: the inputs lower-cased where valid, and names whose
		// compose keys collide ("x" + "y-z", "x-y" + "z").
		deckies := []string{"x", "x-y"}
		services := []string{"y", "y-z", "z"}
		for _, s := range []string{a, b} {
			l := strings.ToLower(s)
			if sl.ValidDeckyName(l) && !slices.Contains(deckies, l) {
				deckies = append(deckies, l)
			}
			if sl.ValidServiceName(l) && !slices.Contains(services, l) {
				services = append(services, l)
			}
		}
		var regSvcs []sl.Service
		for _, s := range services {
			regSvcs = append(regSvcs, sl.Service{Name: s, Image: "i"})
		}
		reg, err := sl.NewRegistry(regSvcs...)
		if err != nil {
			t.Fatal(err)
		}
		scopes := []string{""}
		for _, s := range []string{a, b} {
			if sl.ValidTopologyID(s) && !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			} else if s != "" && !sl.ValidTopologyID(s) {
				// An invalid ID addresses nothing.
				m, _ := sl.New(sl.NewMemoryStore(nil), &servicelivetest.Composer{}, reg)
				if _, err := m.Project(ctx, s); !errors.Is(err, sl.ErrInvalidService) {
					t.Fatalf("Project(%q) = %v, want ErrInvalidService", s, err)
				}
			}
		}

		// Every (fleet, scope) has its own project name, a valid compose
		// project name that decodes back to it.
		projects := map[string][2]string{}
		for _, fleet := range secFleets {
			m, err := sl.New(sl.NewMemoryStore(nil), &servicelivetest.Composer{}, reg, sl.WithFleetProject(fleet))
			if err != nil {
				t.Fatal(err)
			}
			for _, scope := range scopes {
				name := m.ProjectName(scope)
				if !regexpComposeProject(name) || loader.NormalizeProjectName(name) != name {
					t.Fatalf("ProjectName(%q) with fleet %q = %q: not a valid compose project name", scope, fleet, name)
				}
				if scope != "" && name == fleet {
					t.Fatalf("topology %q has the fleet's project %q", scope, name)
				}
				if prev, dup := projects[name]; dup && prev != [2]string{fleet, scope} {
					t.Fatalf("project %q shared by fleet %q scope %q and fleet %q scope %q", name, prev[0], prev[1], fleet, scope)
				}
				projects[name] = [2]string{fleet, scope}
				if df, dt, ok := secDecodeProject(name); !ok || df != fleet || dt != scope {
					t.Fatalf("project %q decodes to (%q, %q, %v), want (%q, %q)", name, df, dt, ok, fleet, scope)
				}
			}
		}
		if sl.ValidTopologyID(a) && sl.ValidTopologyID(b) && a != b {
			m, _ := sl.New(sl.NewMemoryStore(nil), &servicelivetest.Composer{}, reg)
			if m.ProjectName(a) == m.ProjectName(b) {
				t.Fatalf("ProjectName(%q) == ProjectName(%q)", a, b)
			}
		}

		// Container names: one decky per scope at a time (keys of different
		// deckies may collide within a scope, which Project refuses), with
		// every derived service; no two (scope, decky, service) share a name,
		// and each name splits back into its project, decky and service.
		owners := map[string]string{}
		for _, decky := range deckies {
			seed := map[string][]sl.Decky{}
			for _, scope := range scopes {
				seed[scope] = []sl.Decky{{Name: decky, Image: "base", Services: services}}
			}
			m, err := sl.New(sl.NewMemoryStore(seed), &servicelivetest.Composer{}, reg)
			if err != nil {
				t.Fatal(err)
			}
			for _, scope := range scopes {
				p, err := m.Project(ctx, scope)
				if err != nil {
					t.Fatalf("Project(%q) with decky %q: %v", scope, decky, err)
				}
				for key, s := range p.Services {
					owner := fmt.Sprintf("%q/%q/%q", scope, s.Labels[sl.LabelDecky], s.Labels[sl.LabelService])
					if prev, dup := owners[s.ContainerName]; dup && prev != owner {
						t.Fatalf("container name %q shared by %s and %s", s.ContainerName, prev, owner)
					}
					owners[s.ContainerName] = owner
					parts := strings.Split(s.ContainerName, ".")
					want := []string{p.Name, decky}
					if svc := s.Labels[sl.LabelService]; svc != "" {
						want = append(want, svc)
					}
					if !slices.Equal(parts, want) || s.Labels[sl.LabelTopology] != scope || s.CustomLabels["com.docker.compose.project"] != p.Name {
						t.Fatalf("%s: container %q labels %v in project %q", key, s.ContainerName, s.Labels, p.Name)
					}
				}
			}
		}
	})
}

// secUpDownLister is a Composer that cannot remove whole projects, so that
// Teardown brings services down one by one.
type secUpDownLister struct{ c *servicelivetest.Composer }

func (u secUpDownLister) Up(ctx context.Context, p *types.Project, s string) error {
	return u.c.Up(ctx, p, s)
}

func (u secUpDownLister) Down(ctx context.Context, p *types.Project, s string) error {
	return u.c.Down(ctx, p, s)
}

func (u secUpDownLister) Containers(ctx context.Context, p *types.Project) ([]sl.Container, error) {
	return u.c.Containers(ctx, p)
}

// secRunning records, per project, the containers of the fake engine.
func secRunning(c *servicelivetest.Composer, projects []string) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, p := range projects {
		cs, _ := c.Containers(context.Background(), &types.Project{Name: p})
		out[p] = map[string]string{}
		for _, ct := range cs {
			out[p][ct.Service] = ct.ID + "/" + ct.State
		}
	}
	return out
}

// FuzzTopologyScope runs a fuzzed sequence of AddService, RemoveService,
// Deploy, Reconcile, Teardown and Project on one scope (with a Composer
// that can remove whole projects and one that cannot), every scope of the
// store deployed and holding a stray container: the engine only ever gets
// projects of that scope, the containers and files of every other scope
// are untouched, and Deploy, Reconcile and Teardown leave the scope's own
// containers as documented.
func FuzzTopologyScope(f *testing.F) {
	all := []byte{0, 1, 2, 3, 4, 5, 6, 0x83, 0x84, 7}
	for _, s := range [][3]string{
		{"", "web2", "ssh"}, {"Lab", "web1", "ssh"}, {"lab", "web1", "web"}, {"t1", "web1", "rogue"},
		{"old", "web1", "gone"}, {"new", "web1", "ssh"}, {"LAB", "web1", "ssh"}, {"t1", "web1-ssh", "rogue"},
	} {
		f.Add(s[0], s[1], s[2], all)
	}
	for _, n := range secNames {
		f.Add(n, "web1", "ssh", []byte{3, 0, 4, 2, 1})
	}
	template := secTemplate(f)
	f.Fuzz(func(t *testing.T, topology, decky, service string, ops []byte) {
		t.Parallel() // seed corpus only: fuzzing runs one input at a time
		if len(ops) > 12 {
			ops = ops[:12]
		}
		e := newSecEnv(t, template)
		ctx := context.Background()
		valid := topology == "" || sl.ValidTopologyID(topology)
		// The scope under test exists (when valid) beside the seeded ones.
		if valid && !slices.Contains(e.scopes, topology) {
			if err := e.mem.Put(ctx, topology, sl.Decky{Name: "web1", Image: "decnet/base", Services: []string{"http"}}); err != nil {
				t.Fatal(err)
			}
			if sl.ValidDeckyName(decky) && decky != "web1" {
				if err := e.mem.Put(ctx, topology, sl.Decky{Name: decky, Image: "decnet/base"}); err != nil {
					t.Fatal(err)
				}
			}
			e.scopes = append(e.scopes, topology)
		}
		// The engine runs every scope, and every project has a stray: a
		// container that no decky of the store describes, labelled with the
		// fuzzed decky name when it is valid. (A stray whose decky label is
		// missing or not a valid name makes Reconcile fail instead of
		// removing it: reported, not checked here.)
		engine, err := sl.New(e.mem, e.composer, e.reg)
		if err != nil {
			t.Fatal(err)
		}
		strayDecky := "stray"
		if sl.ValidDeckyName(decky) {
			strayDecky = decky
		}
		for _, s := range e.scopes {
			_ = engine.Deploy(ctx, s) // "old" fails at its unregistered service
			e.composer.Inject(e.m.ProjectName(s), "stray-x", strayDecky)
		}
		e.composer.Reset()
		// A second Manager whose Composer cannot remove whole projects.
		m2, err := sl.New(e.mem, secUpDownLister{e.composer}, e.reg, sl.WithProjectDir(e.dir))
		if err != nil {
			t.Fatal(err)
		}
		own, ownDir := e.m.ProjectName(topology), ""
		if valid {
			ownDir = own
		}
		var others []string
		for _, s := range e.scopes {
			if s != topology {
				others = append(others, e.m.ProjectName(s))
			}
		}
		othersBefore := secRunning(e.composer, others)
		filesBefore := e.files(t)

		for _, op := range ops {
			m := e.m
			if op&0x80 != 0 {
				m = m2
			}
			ref := sl.Ref{Topology: topology, Decky: decky}
			before, _ := e.mem.List(ctx, topology)
			var err error
			var what string
			switch op & 0x7f % 7 {
			case 0:
				what = "add"
				_, err = m.AddService(ctx, ref, service, sl.WithConfig(sl.Config{"banner": service, "name": decky}))
			case 1:
				what = "remove"
				_, err = m.RemoveService(ctx, ref, service)
			case 2:
				what = "deploy"
				err = m.Deploy(ctx, topology)
				if err == nil {
					running := secRunning(e.composer, []string{own})[own]
					for _, key := range secKeys(before) {
						if !strings.HasSuffix(running[key], "/running") {
							t.Fatalf("deploy of %q: %s is %q", topology, key, running[key])
						}
					}
				}
			case 3:
				what = "reconcile"
				var rep sl.Report
				rep, err = m.Reconcile(ctx, topology)
				if valid && rep.Project != own && (err == nil || rep.Project != "") {
					t.Fatalf("reconcile of %q reports project %q", topology, rep.Project)
				}
				if err == nil {
					running := secRunning(e.composer, []string{own})[own]
					keys := secKeys(before)
					if got := slices.Sorted(maps.Keys(running)); !slices.Equal(got, keys) {
						t.Fatalf("reconcile of %q left %v, want %v", topology, got, keys)
					}
					for key, st := range running {
						if !strings.HasSuffix(st, "/running") {
							t.Fatalf("reconcile of %q left %s %s", topology, key, st)
						}
					}
				}
			case 4:
				what = "teardown"
				err = m.Teardown(ctx, topology)
				if err == nil {
					running := secRunning(e.composer, []string{own})[own]
					for _, key := range secKeys(before) {
						if _, ok := running[key]; ok {
							t.Fatalf("teardown of %q left %s", topology, key)
						}
					}
				}
			case 5:
				what = "project"
				var p *types.Project
				p, err = m.Project(ctx, topology)
				if err == nil {
					if p.Name != own {
						t.Fatalf("Project(%q).Name = %q", topology, p.Name)
					}
					for key, s := range p.Services {
						e.checkService(t, topology, own, key, s, before, secFull)
					}
				}
			default:
				what = "remove from the stray decky"
				_, err = m.RemoveService(ctx, sl.Ref{Topology: topology, Decky: strayDecky}, "x")
			}
			if !valid && !errors.Is(err, sl.ErrInvalidService) {
				t.Fatalf("%s on invalid scope %q: err = %v, want ErrInvalidService", what, topology, err)
			}
			if errors.Is(err, errors.ErrUnsupported) {
				t.Fatalf("%s: %v", what, err)
			}
			// Every project the engine was given is this scope's, and renders
			// only this scope's deckies (as they were or are now).
			after, _ := e.mem.List(ctx, topology)
			deckies := secUnion(before, after)
			for _, c := range e.composer.Calls() {
				if c.Project != own || c.Spec == nil || c.Spec.Name != own {
					t.Fatalf("%s on scope %q (project %q) called %s %s on project %q", what, topology, own, c.Op, c.Service, c.Project)
				}
				if !valid {
					t.Fatalf("%s on invalid scope %q called %s %s", what, topology, c.Op, c.Service)
				}
				for key, s := range c.Spec.Services {
					if key == "stray-x" { // Reconcile's removal of a stray: found by its project label
						if s.CustomLabels["com.docker.compose.project"] != own || c.Op != servicelivetest.OpDown {
							t.Fatalf("%s: stray %s in %q", what, c.Op, s.CustomLabels["com.docker.compose.project"])
						}
						continue
					}
					e.checkService(t, topology, own, key, s, deckies, secAny)
				}
			}
			e.composer.Reset()
			if got := secRunning(e.composer, others); !maps.EqualFunc(got, othersBefore, maps.Equal) {
				t.Fatalf("%s on scope %q changed other scopes' containers:\n%v\n->\n%v", what, topology, othersBefore, got)
			}
			e.checkFiles(t, ownDir, filesBefore, e.files(t))
			e.checkTree(t)
		}
	})
}

// secKeys returns the sorted compose keys of deckies: bases and services.
func secKeys(deckies []sl.Decky) []string {
	var keys []string
	for _, d := range deckies {
		keys = append(keys, d.ComposeKeys()...)
	}
	slices.Sort(keys)
	return keys
}

// secUnion merges two listings of a scope: every decky of either, with the
// services and config of both.
func secUnion(a, b []sl.Decky) []sl.Decky {
	out := slices.Clone(a)
	for _, d := range b {
		i := slices.IndexFunc(out, func(x sl.Decky) bool { return x.Name == d.Name })
		if i < 0 {
			out = append(out, d)
			continue
		}
		x := out[i].Clone()
		for _, s := range d.Services {
			if !x.HasService(s) {
				x.Services = append(x.Services, s)
				if x.Config == nil {
					x.Config = map[string]sl.Config{}
				}
				x.Config[s] = d.Config[s]
			}
		}
		out[i] = x
	}
	return out
}

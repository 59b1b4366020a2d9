package servicelive_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"go.uber.org/goleak"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/servicelivetest"
)

// openFileStore opens a FileStore at path, failing t on error.
func openFileStore(t testing.TB, path string) *servicelive.FileStore {
	t.Helper()
	s, err := servicelive.OpenFileStore(path)
	if err != nil {
		t.Fatalf("OpenFileStore(%s): %v", path, err)
	}
	return s
}

// putAll writes seed into s with Put.
func putAll(t testing.TB, s *servicelive.FileStore, seed map[string][]servicelive.Decky) {
	t.Helper()
	for topology, ds := range seed {
		for _, d := range ds {
			if err := s.Put(context.Background(), topology, d); err != nil {
				t.Fatalf("Put(%q, %s): %v", topology, d.Name, err)
			}
		}
	}
}

func TestFileStore(t *testing.T) {
	// The suite's second handle is another FileStore on the same file.
	reopen := servicelivetest.WithReopen(func(t *testing.T, s servicelive.Store) servicelive.Store {
		return openFileStore(t, s.(*servicelive.FileStore).Path())
	})
	t.Run("one handle", func(t *testing.T) {
		servicelivetest.TestStore(t, func(t *testing.T, seed map[string][]servicelive.Decky) servicelive.Store {
			s := openFileStore(t, filepath.Join(t.TempDir(), "state.json"))
			putAll(t, s, seed)
			return s
		})
	})
	t.Run("reopened", func(t *testing.T) {
		// The seed is written by one handle and read back by another: all of
		// it, config value types included, goes through the file.
		servicelivetest.TestStore(t, func(t *testing.T, seed map[string][]servicelive.Decky) servicelive.Store {
			path := filepath.Join(t.TempDir(), "state.json")
			putAll(t, openFileStore(t, path), seed)
			return openFileStore(t, path)
		}, reopen)
	})
}

func TestFileStorePutDelete(t *testing.T) {
	testStorePutDelete(t, func(t *testing.T) storePutDeleter {
		return openFileStore(t, filepath.Join(t.TempDir(), "state.json"))
	})
}

func TestFileStoreMissingFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "dir", "state.json") // parents created too
	s := openFileStore(t, path)
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	ds, err := s.List(ctx, "")
	if err != nil || ds == nil || len(ds) != 0 {
		t.Fatalf("List(fleet) of a missing file = %#v, %v; want an empty slice", ds, err)
	}
	if _, err := s.List(ctx, "t1"); !errors.Is(err, servicelive.ErrNotFound) {
		t.Fatalf("List(t1) of a missing file error = %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx, servicelive.FleetDecky("web1"), func(*servicelive.Decky) error { return nil }); !errors.Is(err, servicelive.ErrNotFound) {
		t.Fatalf("Update on a missing file error = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reads created the file: %v", err)
	}
	if err := s.Put(ctx, "", servicelive.Decky{Name: "web1"}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version *int `json:"version"`
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("Put did not create the file: %v", err)
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Version == nil || *doc.Version != 1 {
		t.Fatalf("file after the first Put = %s (%v); want a JSON object with \"version\": 1", data, err)
	}
}

func TestFileStoreFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	s := openFileStore(t, path)
	putAll(t, s, map[string][]servicelive.Decky{"": storeDeckies(3), "t1": storeDeckies(2), "t2": nil})
	for i := range 5 {
		if _, err := s.Update(ctx, servicelive.TopologyDecky("t1", "decky-0001"), func(d *servicelive.Decky) error {
			d.Services = append(d.Services, fmt.Sprint("svc", i))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, servicelive.FleetDecky("decky-0002")); err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version    int                          `json:"version"`
		Fleet      []map[string]any             `json:"fleet"`
		Topologies map[string][]json.RawMessage `json:"topologies"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("file is not valid JSON: %v\n%s", err, data)
	}
	if doc.Version != 1 || len(doc.Fleet) != 2 || len(doc.Topologies["t1"]) != 2 {
		t.Fatalf("file = %s; want version 1, 2 fleet deckies, 2 in t1", data)
	}
	if !json.Valid(data) {
		t.Fatal("file is not valid JSON")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"state.json", "state.json.lock"}; !slices.Equal(names, want) {
		t.Fatalf("directory holds %q, want %q (no temporary files left)", names, want)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("file mode = %v, %v; want 0600", info.Mode(), err)
	}

	// Writing the same state again gives the same bytes: the file is canonical.
	s2 := openFileStore(t, path)
	if _, err := s2.Update(ctx, servicelive.FleetDecky("decky-0000"), func(*servicelive.Decky) error { return nil }); err != nil {
		t.Fatal(err)
	}
	again, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Fatalf("a no-op Update through another handle changed the file:\n%s\nwant\n%s", again, data)
	}
}

func TestFileStoreRoundTripTypes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.json")
	in := servicelive.Decky{
		Name: "web1", Hostname: "web1.corp", IP: "10.0.0.1", Image: "alpine", Network: "decnet", Host: "engine-a",
		Services: []string{},
		Config: map[string]servicelive.Config{
			"ssh":  {"port": 22, "neg": -1, "max": int(^uint(0) >> 1), "on": true, "off": false, "banner": "b\u00e9\n\"<&>", "num": "42", "users": []string{"a"}, "none": []string{}, "nil": []string(nil)},
			"nilc": nil,
			"empt": {},
		},
	}
	if err := openFileStore(t, path).Put(ctx, "t1", in); err != nil {
		t.Fatal(err)
	}
	got, err := openFileStore(t, path).Get(ctx, servicelive.TopologyDecky("t1", "web1"))
	if err != nil {
		t.Fatal(err)
	}
	// A FileStore keeps even nil apart from empty.
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", in) {
		t.Fatalf("after reopen:\n\t%#v\nwant\n\t%#v", got, in)
	}
}

func TestFileStoreCorrupt(t *testing.T) {
	ctx := context.Background()
	valid := `{"version":1,"fleet":[{"name":"web1","services":["ssh"],"config":{"ssh":{"port":{"t":"int","v":22}}}}],"topologies":{}}`
	tests := []struct {
		name    string
		content string
		wantMsg string
	}{
		{"empty", "", "empty file"},
		{"blank", " \n", "empty file"},
		{"truncated", valid[:len(valid)/2], "bad JSON"},
		{"not an object", `[1,2]`, "bad JSON"},
		{"null", `null`, "no format version"},
		{"no version", `{"fleet":[]}`, "no format version"},
		{"future version", `{"version":2,"fleet":[]}`, "unsupported format version 2"},
		{"future version, other shape", `{"version":3,"fleet":{"deckies":{}}}`, "unsupported format version 3"},
		{"version as a string", `{"version":"1","fleet":[]}`, "bad JSON"},
		{"trailing data", valid + `{}`, "data after the document"},
		{"bad decky name", `{"version":1,"fleet":[{"name":"Web_1"}]}`, `bad decky name "Web_1"`},
		{"duplicate decky", `{"version":1,"fleet":[{"name":"web1"},{"name":"web1"}]}`, "decky web1 appears twice"},
		{"bad topology id", `{"version":1,"topologies":{"a b":[]}}`, `bad topology id "a b"`},
		{"fleet as a topology", `{"version":1,"topologies":{"":[]}}`, `bad topology id ""`},
		{"unknown value type", `{"version":1,"fleet":[{"name":"web1","config":{"ssh":{"port":{"t":"float","v":1.5}}}}]}`, `unknown value type "float"`},
		{"untyped value", `{"version":1,"fleet":[{"name":"web1","config":{"ssh":{"port":22}}}]}`, "bad JSON"},
		{"float as int", `{"version":1,"fleet":[{"name":"web1","config":{"ssh":{"port":{"t":"int","v":22.5}}}}]}`, "not an int"},
		{"huge int", `{"version":1,"fleet":[{"name":"web1","config":{"ssh":{"port":{"t":"int","v":1e400}}}}]}`, "not an int"},
		{"int as string", `{"version":1,"fleet":[{"name":"web1","config":{"ssh":{"port":{"t":"int","v":"22"}}}}]}`, "is string"},
		{"mixed []string", `{"version":1,"fleet":[{"name":"web1","config":{"ssh":{"users":{"t":"[]string","v":["a",1]}}}}]}`, "holds json.Number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			// A handle opened while the file was fine meets the corrupt file later.
			if err := os.WriteFile(path, []byte(valid), 0o600); err != nil {
				t.Fatal(err)
			}
			s := openFileStore(t, path)
			if _, err := s.Get(ctx, servicelive.FleetDecky("web1")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}

			checkErr := func(t *testing.T, op string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s on a corrupt file succeeded", op)
				}
				if msg := err.Error(); !strings.HasPrefix(msg, "servicelive: file store "+path+": ") || !strings.Contains(msg, tt.wantMsg) {
					t.Fatalf("%s error = %q, want it to name %s and say %q", op, msg, path, tt.wantMsg)
				}
				if errors.Is(err, servicelive.ErrNotFound) {
					t.Fatalf("%s error %q matches ErrNotFound", op, err)
				}
			}
			_, err := servicelive.OpenFileStore(path)
			checkErr(t, "OpenFileStore", err)
			_, err = s.Get(ctx, servicelive.FleetDecky("web1"))
			checkErr(t, "Get", err)
			_, err = s.List(ctx, "")
			checkErr(t, "List", err)
			called := false
			_, err = s.Update(ctx, servicelive.FleetDecky("web1"), func(*servicelive.Decky) error { called = true; return nil })
			checkErr(t, "Update", err)
			if called {
				t.Error("Update called fn on a corrupt file")
			}
			checkErr(t, "Put", s.Put(ctx, "", servicelive.Decky{Name: "web2"}))
			checkErr(t, "Delete", s.Delete(ctx, servicelive.FleetDecky("web1")))

			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tt.content {
				t.Fatalf("the corrupt file changed:\n%q\nwant\n%q", data, tt.content)
			}
		})
	}

	t.Run("unreadable", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.json")
		if err := os.Mkdir(path, 0o700); err != nil { // a directory cannot be read as a file
			t.Fatal(err)
		}
		_, err := servicelive.OpenFileStore(path)
		if err == nil || !strings.HasPrefix(err.Error(), "servicelive: file store "+path+": ") {
			t.Fatalf("OpenFileStore of a directory: error = %v, want one naming the path", err)
		}
	})
}

// TestFileStoreTwoHandles runs concurrent Updates through two handles on one file.
func TestFileStoreTwoHandles(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.json")
	a, b := openFileStore(t, path), openFileStore(t, path)
	putAll(t, a, map[string][]servicelive.Decky{"": storeDeckies(20)})
	ref := servicelive.FleetDecky("decky-0007")
	const goroutines, each = 8, 10
	var wg sync.WaitGroup
	for h, s := range []*servicelive.FileStore{a, b} {
		for g := range goroutines {
			wg.Go(func() {
				for i := range each {
					token := fmt.Sprintf("h%d-g%d-%d", h, g, i)
					if _, err := s.Update(ctx, ref, func(d *servicelive.Decky) error {
						d.Services = append(d.Services, token)
						return nil
					}); err != nil {
						t.Errorf("Update adding %s: %v", token, err)
						return
					}
					// Reads interleave with the writes of the other handle.
					if _, err := s.Get(ctx, ref); err != nil {
						t.Errorf("Get: %v", err)
					}
				}
			})
		}
	}
	wg.Wait()
	for _, s := range []*servicelive.FileStore{a, b, openFileStore(t, path)} {
		d, err := s.Get(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		checkTokens(t, d.Services[5:], "h", 2, goroutines*each)
	}
}

// checkTokens fails t unless tokens holds, once each, n tokens of each of
// the handles prefix0 .. prefix<handles-1>.
func checkTokens(t *testing.T, tokens []string, prefix string, handles, n int) {
	t.Helper()
	count := make(map[string]int)
	seen := make(map[string]bool)
	for _, tok := range tokens {
		if seen[tok] {
			t.Errorf("token %s stored twice", tok)
		}
		seen[tok] = true
		h, _, _ := strings.Cut(tok, "-")
		count[h]++
	}
	for h := range handles {
		if got := count[prefix+strconv.Itoa(h)]; got != n {
			t.Errorf("%d updates of %s%d stored, want %d: some were lost", got, prefix, h, n)
		}
	}
	if len(tokens) != handles*n {
		t.Errorf("%d tokens stored, want %d", len(tokens), handles*n)
	}
}

const (
	helperEnvPath = "SERVICELIVE_FILESTORE_HELPER_PATH"
	helperEnvN    = "SERVICELIVE_FILESTORE_HELPER_N"
)

// TestFileStoreHelperProcess is not a test: TestFileStoreTwoProcesses runs
// the test binary again with it, as the second process.
func TestFileStoreHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnvPath)
	if path == "" {
		t.Skip("helper process for TestFileStoreTwoProcesses")
	}
	n, err := strconv.Atoi(os.Getenv(helperEnvN))
	if err != nil {
		t.Fatal(err)
	}
	s := openFileStore(t, path)
	fmt.Println("ready")
	runTokenUpdates(t, s, "p1", n)
}

// runTokenUpdates makes n Updates of fleet/decky-0003 from 4 goroutines,
// each appending a token "<prefix>-<i>" to the services.
func runTokenUpdates(t *testing.T, s *servicelive.FileStore, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < n; i += 4 {
				token := fmt.Sprintf("%s-%d", prefix, i)
				if _, err := s.Update(context.Background(), servicelive.FleetDecky("decky-0003"), func(d *servicelive.Decky) error {
					d.Services = append(d.Services, token)
					return nil
				}); err != nil {
					t.Errorf("Update adding %s: %v", token, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestFileStoreTwoProcesses runs Updates of one decky from this process and
// from another one at the same time.
func TestFileStoreTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process")
	}
	const n = 100
	path := filepath.Join(t.TempDir(), "state.json")
	s := openFileStore(t, path)
	putAll(t, s, map[string][]servicelive.Decky{"": storeDeckies(50)})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFileStoreHelperProcess$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), helperEnvPath+"="+path, helperEnvN+"="+strconv.Itoa(n))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == "ready" {
			ready = true
			break
		}
	}
	if !ready {
		_ = cmd.Wait()
		t.Fatalf("helper process never got ready:\n%s%s", out.String(), stderr.String())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = out.ReadFrom(stdout)
	}()
	runTokenUpdates(t, s, "p0", n)
	<-done
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper process: %v\n%s%s", err, out.String(), stderr.String())
	}

	d, err := openFileStore(t, path).Get(context.Background(), servicelive.FleetDecky("decky-0003"))
	if err != nil {
		t.Fatal(err)
	}
	checkTokens(t, d.Services[5:], "p", 2, n)
	// Both processes took turns: the tokens are not all of one then all of the other.
	if switches := countSwitches(d.Services[5:]); switches < 2 {
		t.Logf("the processes did not overlap (%d switches); the test proved less than it could", switches)
	}
}

func countSwitches(tokens []string) int {
	n := 0
	for i := 1; i < len(tokens); i++ {
		if tokens[i][:2] != tokens[i-1][:2] {
			n++
		}
	}
	return n
}

// TestFileStoreLockHeld checks that a call waiting for a lock another
// process holds gives up when its context is done.
func TestFileStoreLockHeld(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := filepath.Join(t.TempDir(), "state.json")
	s := openFileStore(t, path)
	putAll(t, s, map[string][]servicelive.Decky{"": storeDeckies(2)})
	other := flock.New(path + ".lock")
	if err := other.Lock(); err != nil {
		t.Fatal(err)
	}
	defer other.Unlock()

	ref := servicelive.FleetDecky("decky-0001")
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, ref); return err }},
		{"List", func(ctx context.Context) error { _, err := s.List(ctx, ""); return err }},
		{"Update", func(ctx context.Context) error {
			_, err := s.Update(ctx, ref, func(*servicelive.Decky) error { return nil })
			return err
		}},
		{"Put", func(ctx context.Context) error { return s.Put(ctx, "", servicelive.Decky{Name: "web9"}) }},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, ref) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			start := time.Now()
			if err := tt.call(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s while another process holds the lock: error = %v, want DeadlineExceeded", tt.name, err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("%s took %v to give up", tt.name, d)
			}
		})
	}
	// Waiters of the same handle give up too, in the handle's queue.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			if _, err := s.Get(ctx, ref); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("queued Get: error = %v, want DeadlineExceeded", err)
			}
		})
	}
	wg.Wait()
	if err := other.Unlock(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), ref); err != nil {
		t.Fatalf("Get once the lock is free: %v", err)
	}
}

func FuzzFileStoreOpen(f *testing.F) {
	for _, seed := range []string{
		`{"version":1,"fleet":[],"topologies":{}}`,
		`{"version":1,"fleet":[{"name":"web1","hostname":"h","services":["ssh"],"config":{"ssh":{"port":{"t":"int","v":22},"on":{"t":"bool","v":true},"b":{"t":"string","v":"x"},"u":{"t":"[]string","v":["a"]}}}}],"topologies":{"t1":[{"name":"gw","services":null,"config":null}]}}`,
		`{"version":2}`,
		`{"version":1,"fleet":[{"name":"web1"},{"name":"web1"}]}`,
		`{"version":1,"fleet":[{"name":"web1","config":{"s":{"k":{"t":"int","v":1e3}}}}]}`,
		`null`,
		``,
		// The store's own layout, which OpenFileStore reads line by line.
		"{\n  \"version\": 1,\n  \"fleet\": [\n    {\"name\":\"a\",\"services\":null,\"config\":null},\n    {\"name\":\"b\",\"services\":[\"ssh\"],\"config\":{\"ssh\":{\"port\":{\"t\":\"int\",\"v\":22}}}}\n  ],\n  \"topologies\": {\n    \"t1\": [],\n    \"t2\": [\n      {\"name\":\"a\",\"services\":null,\"config\":null}\n    ]\n  }\n}\n",
		"{\n  \"version\": 1,\n  \"fleet\": [\n    {\"name\":\"b\",\"services\":null,\"config\":null},\n    {\"name\":\"a\",\"services\":null,\"config\":null}\n  ],\n  \"topologies\": {}\n}\n",
		"{\n  \"version\": 1,\n  \"fleet\": [\n    {\"name\":\"a\",\"services\":null,\"config\":null},\n    {\"name\":\"a\",\"services\":null,\"config\":null}\n  ],\n  \"topologies\": {}\n}\n",
		"{\n  \"version\": 1,\n  \"fleet\": [],\n  \"topologies\": {\n    \"t1\": [],\n    \"t1\": []\n  }\n}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "state.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := servicelive.OpenFileStore(path)
		if err != nil {
			if s != nil {
				t.Fatal("OpenFileStore returned a store and an error")
			}
			if !strings.HasPrefix(err.Error(), "servicelive: file store ") {
				t.Fatalf("error %q does not name the file store", err)
			}
			return
		}
		ctx := context.Background()
		before, err := s.List(ctx, "")
		if err != nil {
			t.Fatalf("List of a file OpenFileStore accepted: %v", err)
		}
		// What the store writes, it reads back.
		if err := s.Put(ctx, "", servicelive.Decky{Name: "fuzz-probe"}); err != nil {
			t.Fatalf("Put: %v", err)
		}
		after, err := openFileStore(t, path).List(ctx, "")
		if err != nil {
			t.Fatalf("List after reopening the file the store wrote: %v", err)
		}
		after = slices.DeleteFunc(after, func(d servicelive.Decky) bool { return d.Name == "fuzz-probe" })
		before = slices.DeleteFunc(before, func(d servicelive.Decky) bool { return d.Name == "fuzz-probe" })
		if fmt.Sprintf("%#v", after) != fmt.Sprintf("%#v", before) {
			t.Fatalf("fleet changed through a rewrite:\n%#v\nwant\n%#v", after, before)
		}
	})
}

// writeStateFile writes a FileStore file holding ds as the fleet, in the
// documented format, without going through Put.
func writeStateFile(tb testing.TB, path string, ds []servicelive.Decky) {
	tb.Helper()
	type value struct {
		T string `json:"t"`
		V any    `json:"v"`
	}
	fleet := make([]map[string]any, len(ds))
	for i, d := range ds {
		cfg := make(map[string]map[string]value)
		for svc, c := range d.Config {
			cfg[svc] = make(map[string]value)
			for k, v := range c {
				cfg[svc][k] = value{T: fmt.Sprintf("%T", v), V: v}
			}
		}
		fleet[i] = map[string]any{
			"name": d.Name, "hostname": d.Hostname, "ip": d.IP, "image": d.Image,
			"services": d.Services, "config": cfg, "network": d.Network,
		}
	}
	data, err := json.Marshal(map[string]any{"version": 1, "fleet": fleet, "topologies": map[string]any{}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func BenchmarkFileStoreUpdate1000(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "state.json")
	ds := storeDeckies(1000)
	writeStateFile(b, path, ds)
	s := openFileStore(b, path)
	i := 0
	for b.Loop() {
		ref := servicelive.FleetDecky(ds[i%len(ds)].Name)
		i++
		if _, err := s.Update(ctx, ref, func(d *servicelive.Decky) error {
			d.Config["http"]["port"] = i
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	if info, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(info.Size()), "file-bytes")
	}
}

// BenchmarkFileStoreUpdate1000TwoHandles alternates Updates between two
// handles, so that every Update finds a file it has not parsed.
func BenchmarkFileStoreUpdate1000TwoHandles(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "state.json")
	ds := storeDeckies(1000)
	writeStateFile(b, path, ds)
	hs := []*servicelive.FileStore{openFileStore(b, path), openFileStore(b, path)}
	i := 0
	for b.Loop() {
		ref := servicelive.FleetDecky(ds[i%len(ds)].Name)
		i++
		if _, err := hs[i%2].Update(ctx, ref, func(d *servicelive.Decky) error {
			d.Config["http"]["port"] = i
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFileStoreGet1000(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "state.json")
	ds := storeDeckies(1000)
	writeStateFile(b, path, ds)
	s := openFileStore(b, path)
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, servicelive.FleetDecky(ds[i%len(ds)].Name)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestFileStoreEditedFile checks that a handle sees every change made to the
// file behind its back, in its own layout or any other.
func TestFileStoreEditedFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.json")
	s := openFileStore(t, path)
	putAll(t, s, map[string][]servicelive.Decky{"": storeDeckies(3), "t1": storeDeckies(1)})
	ref := servicelive.FleetDecky("decky-0001")
	if _, err := s.Get(ctx, ref); err != nil {
		t.Fatal(err)
	}

	edit := func(t *testing.T, from, to string) {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(from)) {
			t.Fatalf("file holds no %q:\n%s", from, data)
		}
		if err := os.WriteFile(path, bytes.Replace(data, []byte(from), []byte(to), 1), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	checkPort := func(t *testing.T, want int) {
		t.Helper()
		for _, s := range []*servicelive.FileStore{s, openFileStore(t, path)} {
			d, err := s.Get(ctx, servicelive.FleetDecky("decky-0000"))
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Config["ssh"]["port"]; got != want {
				t.Fatalf("ssh port = %#v, want %d", got, want)
			}
		}
	}

	t.Run("one line changed", func(t *testing.T) {
		edit(t, `"port":{"t":"int","v":22}`, `"port":{"t":"int","v":2200}`)
		checkPort(t, 2200)
	})
	t.Run("reformatted and reordered", func(t *testing.T) {
		ds := storeDeckies(3)
		ds[0].Config["ssh"]["port"] = 2201
		writeStateFile(t, path, []servicelive.Decky{ds[2], ds[0], ds[1]})
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, data, "", "\t"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		checkPort(t, 2201)
		got, err := s.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if names := []string{got[0].Name, got[1].Name, got[2].Name}; !slices.IsSorted(names) {
			t.Fatalf("List = %q, want sorted", names)
		}
		if _, err := s.List(ctx, "t1"); !errors.Is(err, servicelive.ErrNotFound) {
			t.Fatalf("List(t1) of a file without t1: error = %v, want ErrNotFound", err)
		}
	})
	t.Run("rewritten in the store's layout", func(t *testing.T) {
		if _, err := s.Update(ctx, servicelive.FleetDecky("decky-0000"), func(d *servicelive.Decky) error {
			d.Config["ssh"]["port"] = 2202
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		checkPort(t, 2202)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(data, []byte("\n")); n != 9 { // {, version, fleet [, 3 deckies, ], topologies, }
			t.Fatalf("rewritten file has %d lines, want 9:\n%s", n, data)
		}
	})
	t.Run("a decky line broken", func(t *testing.T) {
		edit(t, `"name":"decky-0001"`, `"name":"decky-0001",`)
		if _, err := s.Get(ctx, servicelive.FleetDecky("decky-0000")); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("Get with a broken line: error = %v, want one naming the file", err)
		}
	})
}

func ExampleOpenFileStore() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "servicelive-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "state.json")

	s, err := servicelive.OpenFileStore(path) // a missing file is an empty store
	if err != nil {
		fmt.Println(err)
		return
	}
	err = s.Put(ctx, "", servicelive.Decky{
		Name:     "web1",
		Services: []string{"ssh"},
		Config:   map[string]servicelive.Config{"ssh": {"port": 2222}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Another handle, here or in another process, sees the decky, and the
	// config value keeps its Go type.
	other, err := servicelive.OpenFileStore(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	d, err := other.Get(ctx, servicelive.FleetDecky("web1"))
	if err != nil {
		fmt.Println(err)
		return
	}
	port := d.Config["ssh"]["port"].(int)
	fmt.Println(d.Services, port+1)
	// Output: [ssh] 2223
}

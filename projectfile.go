package servicelive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/decnet/servicelive/internal/atomicfile"
)

// Layout of a scope's compose files under the project directory:
//
//	<dir>/<project>/compose.yaml          names the project, includes every decky's file
//	<dir>/<project>/compose.host.<host>.yaml   the same for the deckies of one host (see below)
//	<dir>/<project>/deckies/<decky>.yaml  one decky: its base and its services
//
// With a Composer that routes by host (HostRouter), compose.yaml includes
// the deckies of host "" (the default engine) only, and each other host
// that runs deckies of the scope has its own top file (see hostFileName):
// `docker -H <host> compose -f compose.host.<host>.yaml up -d` reproduces
// that host's part. Other files of the directory (a compose.override.yaml
// of the user's) are left alone.
//
// A mutation rewrites only its decky's file, so its cost does not grow with
// the scope; compose.yaml changes only when the scope's set of deckies does.
// `docker compose -f <dir>/<project>/compose.yaml up -d` reproduces the scope.
const (
	topFileName  = "compose.yaml"
	deckyDirName = "deckies"
)

// Compose files can hold secrets (config values): they and their
// directories are private to the owner.
//
// They are replaced atomically (a reader or a killed process sees the old
// file or the new one) but not flushed to disk: they derive from the Store,
// and after an OS crash or a power loss Reconcile rewrites them from it. An
// fsync of the file and of its directory per write cost 3 ms of a 3.1 ms
// add+remove pair on the reference machine.
const (
	filePerm = 0o600
	dirPerm  = 0o700
)

// mkdirPrivate creates dir (and its parents) with mode 0700, and narrows
// dir to 0700 if it exists with a wider mode (as written by older
// versions).
func mkdirPrivate(dir string) error {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, dirPerm)
	case err != nil:
		return err
	case info.Mode().Perm()&^dirPerm != 0:
		return os.Chmod(dir, info.Mode().Perm()&dirPerm)
	}
	return nil
}

// fileWriter keeps the scopes' compose files current. Every write is atomic.
type fileWriter struct {
	m      *Manager
	mu     sync.Mutex
	scopes map[string]*scopeFiles // by project name
}

// scopeFiles tracks which deckies a scope's compose.yaml includes.
type scopeFiles struct {
	mu       sync.Mutex
	included map[string]string // decky → the top file including it; nil until written by us
}

func (w *fileWriter) scope(project string) *scopeFiles {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.scopes == nil {
		w.scopes = make(map[string]*scopeFiles)
	}
	s := w.scopes[project]
	if s == nil {
		s = &scopeFiles{}
		w.scopes[project] = s
	}
	return s
}

// writeDecky writes the file of decky d, rendered as p, and, unless
// withTop is false (the caller writes compose.yaml once for a whole scope),
// makes sure the scope's compose.yaml includes it. The caller holds d's
// lock.
func (w *fileWriter) writeDecky(ctx context.Context, topology string, p *types.Project, d Decky, withTop bool) error {
	if w.m.projectDir == "" {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Join(w.m.projectDir, p.Name)
	if err := writeDeckyYAML(dir, p, d.Name); err != nil {
		return err
	}
	if !withTop {
		return nil
	}
	s := w.scope(p.Name)
	s.mu.Lock()
	file, included := s.included[d.Name]
	s.mu.Unlock()
	if included && file == hostFileName(w.m.hostOf(d)) {
		return nil
	}
	return w.writeTop(ctx, topology, p.Name)
}

// writeTop rewrites the scope's compose.yaml so that it includes the file
// of every decky the Store lists and that has one. A decky's own file is
// only ever written under that decky's lock, by the call that holds it:
// compose.yaml never includes a file that does not exist, and no call
// writes another decky's file from a stale read.
func (w *fileWriter) writeTop(ctx context.Context, topology, project string) error {
	if w.m.projectDir == "" {
		return nil
	}
	deckies, err := w.m.store.List(ctx, topology)
	if err != nil {
		return err
	}
	dir := filepath.Join(w.m.projectDir, project)
	byFile := map[string][]string{topFileName: {}} // compose.yaml always exists
	for _, d := range deckies {
		if _, err := os.Stat(deckyFilePath(dir, d.Name)); err == nil {
			f := hostFileName(w.m.hostOf(d))
			byFile[f] = append(byFile[f], d.Name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	s := w.scope(project)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeTop(dir, project, byFile)
}

// sweep removes the files of deckies that left the scope (each checked
// against the Store under its decky's lock, so that a decky added meanwhile
// keeps its file) and the temporary files of writers that died mid-write.
func (w *fileWriter) sweep(ctx context.Context, topology, project string, listed []Decky) error {
	if w.m.projectDir == "" {
		return nil
	}
	ddir := filepath.Join(w.m.projectDir, project, deckyDirName)
	entries, err := os.ReadDir(ddir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // an empty scope
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			if !ValidDeckyName(name) || slices.ContainsFunc(listed, func(d Decky) bool { return d.Name == name }) {
				continue
			}
			if err := w.removeGone(ctx, Ref{Topology: topology, Decky: name}, filepath.Join(ddir, e.Name())); err != nil {
				return err
			}
		} else if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".yaml.tmp-") {
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
				if err := os.Remove(filepath.Join(ddir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
		}
	}
	return nil
}

// removeGone removes the file at path of the decky ref if the Store no
// longer has the decky.
func (w *fileWriter) removeGone(ctx context.Context, ref Ref, path string) error {
	unlock, err := w.m.lockDeckies(ctx, ref)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := w.m.store.Get(ctx, ref); !errors.Is(err, ErrNotFound) {
		return err // still there (nil), or the Store failed
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// deckyFilePath returns the path of decky's file in the scope directory dir.
func deckyFilePath(dir, decky string) string {
	return filepath.Join(dir, deckyDirName, decky+".yaml")
}

// writeTop writes, for each host's file of byFile (compose.yaml for host
// "", see hostFileName), the file including the given deckies' files, and
// removes the files of hosts that no longer run a decky of the scope (files
// named as hostFileName names them; nothing else).
func (s *scopeFiles) writeTop(dir, project string, byFile map[string][]string) error {
	if err := mkdirPrivate(dir); err != nil {
		return err
	}
	included := map[string]string{}
	for file, deckies := range byFile {
		if err := writeTopFile(dir, file, project, deckies); err != nil {
			return err
		}
		for _, d := range deckies {
			included[d] = file
		}
	}
	stale, err := filepath.Glob(filepath.Join(dir, hostFilePattern))
	if err != nil {
		return err
	}
	for _, f := range stale {
		if _, ok := byFile[filepath.Base(f)]; !ok {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	s.included = included
	return nil
}

// writeTopFile writes one top file (compose.yaml, or a host's) of the
// scope: the project's name and the deckies' files it includes.
func writeTopFile(dir, file, project string, deckies []string) error {
	slices.Sort(deckies)
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by servicelive from its store; do not edit.\nname: %s\n", project)
	if len(deckies) == 0 {
		b.WriteString("services: {}\n")
	} else {
		b.WriteString("include:\n")
	}
	for _, d := range deckies {
		// Names are validated ([a-z0-9-]): safe as plain YAML scalars and paths.
		fmt.Fprintf(&b, "  - path: %s/%s.yaml\n    project_directory: .\n", deckyDirName, d)
	}
	return atomicfile.Replace(filepath.Join(dir, file), []byte(b.String()), filePerm)
}

// deckyFile is the content of one decky's compose file.
type deckyFile struct {
	Services types.Services `json:"services"`
	Networks types.Networks `json:"networks,omitempty"`
}

// writeDeckyYAML writes the services of p that belong to decky, and the
// networks they join, to the decky's file.
func writeDeckyYAML(dir string, p *types.Project, decky string) error {
	part := &types.Project{Services: types.Services{}, Networks: types.Networks{}}
	for name, s := range p.Services {
		if s.Labels[LabelDecky] != decky {
			continue
		}
		part.Services[name] = s
		for net := range s.Networks {
			part.Networks[net] = p.Networks[net]
		}
	}
	// JSON, which is YAML: go.yaml.in/yaml (through compose-go's
	// MarshalYAML) writes some multi-line strings as block scalars that do
	// not read back the same (a value starting with a line break and an
	// indented line), so a config value could alter or break the file.
	// encoding/json quotes every string.
	body, err := json.MarshalIndent(deckyFile{Services: part.Services, Networks: part.Networks}, "", "  ")
	if err != nil {
		return fmt.Errorf("servicelive: render compose file of %s: %w", decky, err)
	}
	// Docker Compose interpolates every "$" of a file it loads; the values
	// rendered here are literal (a config value "${HOME}" or "$(id)" must
	// reach the container as is), so every "$" is escaped as "$$". Names are
	// validated and hold no "$", so this touches values only.
	body = bytes.ReplaceAll(body, []byte("$"), []byte("$$"))
	data := append([]byte("# Written by servicelive from its store; do not edit. (JSON is YAML.)\n"), body...)
	data = append(data, '\n')
	if err := mkdirPrivate(filepath.Join(dir, deckyDirName)); err != nil {
		return err
	}
	return atomicfile.Replace(deckyFilePath(dir, decky), data, filePerm)
}

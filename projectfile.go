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
//	<dir>/<project>/deckies/<decky>.yaml  one decky: its base and its services
//
// A mutation rewrites only its decky's file, so its cost does not grow with
// the scope; compose.yaml changes only when the scope's set of deckies does.
// `docker compose -f <dir>/<project>/compose.yaml up -d` reproduces the scope.
const (
	topFileName  = "compose.yaml"
	deckyDirName = "deckies"
)

// fileWriter keeps the scopes' compose files current. Every write is atomic.
type fileWriter struct {
	m      *Manager
	mu     sync.Mutex
	scopes map[string]*scopeFiles // by project name
}

// scopeFiles tracks which deckies a scope's compose.yaml includes.
type scopeFiles struct {
	mu       sync.Mutex
	included map[string]bool // nil until compose.yaml was written by us
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

// writeDecky writes the file of decky d, rendered as p, and makes sure the
// scope's compose.yaml includes it. The caller holds d's lock.
func (w *fileWriter) writeDecky(ctx context.Context, topology string, p *types.Project, d Decky) error {
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
	s := w.scope(p.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.included[d.Name] {
		return nil
	}
	deckies, err := w.m.store.List(ctx, topology)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(deckies)+1)
	for _, x := range deckies {
		names = append(names, x.Name)
		// compose.yaml must never include a file that does not exist: write
		// the missing ones (once per scope and process, on a first mutation
		// before any Deploy).
		if x.Name == d.Name {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, deckyDirName, x.Name+".yaml")); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		xp, err := w.m.deckyProject(topology, x, renderTolerant, "")
		if err != nil {
			return err
		}
		if err := writeDeckyYAML(dir, xp, x.Name); err != nil {
			return err
		}
	}
	if !slices.Contains(names, d.Name) {
		names = append(names, d.Name)
	}
	return s.writeTop(dir, p.Name, names)
}

// writeScope writes every decky's file of a whole rendered scope and its
// compose.yaml, and removes the files of deckies that left the scope.
func (w *fileWriter) writeScope(ctx context.Context, p *types.Project, deckies []Decky) error {
	if w.m.projectDir == "" {
		return nil
	}
	dir := filepath.Join(w.m.projectDir, p.Name)
	byDecky := make(map[string]*types.Project, len(deckies))
	for name, svc := range p.Services {
		d := svc.Labels[LabelDecky]
		part := byDecky[d]
		if part == nil {
			part = &types.Project{Services: types.Services{}, Networks: p.Networks}
			byDecky[d] = part
		}
		part.Services[name] = svc
	}
	names := make([]string, 0, len(deckies))
	for _, d := range deckies {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := writeDeckyYAML(dir, byDecky[d.Name], d.Name); err != nil {
			return err
		}
		names = append(names, d.Name)
	}
	s := w.scope(p.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeTop(dir, p.Name, names); err != nil {
		return err
	}
	// Drop the files of deckies that are no longer in the scope.
	// and the temporary files of writers that died mid-write.
	entries, err := os.ReadDir(filepath.Join(dir, deckyDirName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // an empty scope
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		var stale bool
		if name, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			stale = !slices.Contains(names, name) && ValidDeckyName(name)
		} else if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".yaml.tmp-") {
			info, err := e.Info()
			stale = err == nil && time.Since(info.ModTime()) > time.Minute
		}
		if stale {
			if err := os.Remove(filepath.Join(dir, deckyDirName, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// writeTop writes compose.yaml including the given deckies' files.
func (s *scopeFiles) writeTop(dir, project string, deckies []string) error {
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
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, topFileName), []byte(b.String()), 0o644); err != nil {
		return err
	}
	s.included = make(map[string]bool, len(deckies))
	for _, d := range deckies {
		s.included[d] = true
	}
	return nil
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
	ddir := filepath.Join(dir, deckyDirName)
	if err := os.MkdirAll(ddir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(ddir, decky+".yaml"), data, 0o644)
}

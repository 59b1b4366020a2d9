package servicelive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/decnet/servicelive/internal/atomicfile"
	"github.com/decnet/servicelive/internal/filelock"
)

// FileStore is a Store kept in one JSON file, which any number of handles, in
// one process or in several, can share. Create one with OpenFileStore.
//
// The file holds the fleet and every topology under a format version:
//
//	{
//	  "version": 1,
//	  "fleet": [
//	    {"name":"web1","image":"alpine","services":["ssh"],"config":{"ssh":{"port":{"t":"int","v":22}}}}
//	  ],
//	  "topologies": {
//	    "t1": [...]
//	  }
//	}
//
// Each config value is stored with its Go type ("string", "int", "bool" or
// "[]string"), so it comes back with the type it was given.
//
// Every write replaces the file atomically (a temporary file in the same
// directory, fsynced, renamed over the file, then the directory fsynced).
// Writers hold an exclusive flock(2) on the sibling file "<path>.lock" from
// reading the file to renaming the new one; readers hold a shared lock. So
// no Update is ever lost, whichever handle or process makes it. A call
// waiting for a lock another handle holds waits in the kernel (no polling)
// and gives up with ctx.Err() when ctx is done. The lock file stays in
// place: do not remove it while the store is in use. The file is created
// with mode 0600.
//
// FileStore is a DeckyLocker: LockDecky takes an exclusive flock on
// "<path>.locks/<decky's lock name>" (directory mode 0700, one empty file
// per decky ever locked, never removed), so a Manager's mutations of one
// decky are serialised with every other Manager's on the same file, in any
// process of the host. flock(2) is per host: processes on different
// machines sharing the file over a network file system are not serialised
// (use sqlstore with PostgreSQL for that).
//
// Every call reads the file, but a handle keeps the state it last parsed:
// while the content is unchanged nothing is decoded, and after another
// handle's write only the deckies whose lines changed are. An Update encodes
// only the decky it changes.
//
// A file that cannot be read or parsed, or has an unknown format version, is
// an error naming the path, never an empty store, and no write replaces it.
// FileStore is a servicelive Outbox: the events a Bus has not taken yet are
// files of the directory "<path>.outbox" (see AppendEvent).
//
// A FileStore holds no open file between calls and needs no Close.
type FileStore struct {
	path     string
	lockPath string
	deckies  *filelock.Dir // the decky locks, created on first use

	deckiesOnce sync.Once
	deckiesErr  error

	// sem orders the calls of this handle before they reach the flock: a
	// reader takes 1, a writer fsMaxReaders. Without it callers of one handle
	// would contend through flock polling.
	sem *semaphore.Weighted

	mu    sync.Mutex // guards cache (the pointer; see fsState)
	cache *fsState
}

var (
	_ Store       = (*FileStore)(nil)
	_ DeckyLocker = (*FileStore)(nil)
)

const (
	// fsFormatVersion is the version of the file format FileStore reads and writes.
	fsFormatVersion = 1
	// fsMaxReaders is the weight of a writer on FileStore.sem.
	fsMaxReaders = 1 << 30
)

// OpenFileStore returns a FileStore kept in the file at path, creating the
// parent directory if needed. A missing file is an empty store (just the
// fleet); it is created on the first write. An existing file is read and
// checked now: a file that cannot be read or parsed is an error.
func OpenFileStore(path string) (*FileStore, error) {
	if path == "" {
		return nil, errors.New("servicelive: file store: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("servicelive: file store %s: %w", path, err)
	}
	s := &FileStore{path: abs, lockPath: abs + ".lock", sem: semaphore.NewWeighted(fsMaxReaders)}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, s.errorf("%w", err)
	}
	unlock, err := s.lock(context.Background(), false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path returns the absolute path of the file s is kept in.
func (s *FileStore) Path() string { return s.path }

// Get returns a deep copy of the decky ref addresses, as the file holds it
// now. A missing topology or decky is an error matching ErrNotFound; a
// malformed ref matches ErrInvalidService.
func (s *FileStore) Get(ctx context.Context, ref Ref) (Decky, error) {
	if err := ctx.Err(); err != nil {
		return Decky{}, err
	}
	if err := ref.validate(); err != nil {
		return Decky{}, &Error{Op: "get", Ref: ref, Err: err}
	}
	unlock, err := s.lock(ctx, false)
	if err != nil {
		return Decky{}, err
	}
	defer unlock()
	st, err := s.load()
	if err != nil {
		return Decky{}, err
	}
	e, err := st.lookup(ref)
	if err != nil {
		return Decky{}, err
	}
	return e.d.Clone(), nil
}

// List returns deep copies of the deckies of topology ("" = the fleet),
// sorted by name. An empty scope is an empty, non-nil slice; a missing
// topology is an error matching ErrNotFound.
func (s *FileStore) List(ctx context.Context, topology string) ([]Decky, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validateScope(topology); err != nil {
		return nil, &Error{Op: "list", Err: err}
	}
	unlock, err := s.lock(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	sc, ok := st.scopes[topology]
	if !ok {
		return nil, TopologyNotFound(topology)
	}
	out := make([]Decky, 0, len(sc.names))
	for _, name := range sc.names {
		out = append(out, sc.entries[name].d.Clone())
	}
	return out, nil
}

// Update runs fn on a deep copy of the decky ref addresses and writes the
// result. The file is re-read under the exclusive lock, so no Update from any
// handle or process is lost. fn runs once, with the lock held: it must not
// call s. If fn returns an error nothing is written and Update returns that
// error unchanged. fn may not rename the decky, and config values must be
// string, int, bool or []string; otherwise nothing is written and the error
// matches ErrInvalidService. A missing topology or decky matches ErrNotFound
// and fn is not called. The returned Decky is a deep copy of what was written.
func (s *FileStore) Update(ctx context.Context, ref Ref, fn func(*Decky) error) (Decky, error) {
	if err := ctx.Err(); err != nil {
		return Decky{}, err
	}
	if err := ref.validate(); err != nil {
		return Decky{}, &Error{Op: "update", Ref: ref, Err: err}
	}
	unlock, err := s.lock(ctx, true)
	if err != nil {
		return Decky{}, err
	}
	defer unlock()
	st, err := s.load()
	if err != nil {
		return Decky{}, err
	}
	e, err := st.lookup(ref)
	if err != nil {
		return Decky{}, err
	}
	d := e.d.Clone()
	if err := fn(&d); err != nil {
		return Decky{}, err
	}
	if err := CheckUpdate(ref, d); err != nil {
		return Decky{}, err
	}
	stored := d.Clone() // fn's caller may still hold &d
	enc, err := MarshalDecky(stored)
	if err != nil {
		return Decky{}, s.errorf("encode decky %s: %w", ref, err)
	}
	st.scopes[ref.Topology].entries[ref.Decky] = &fsEntry{d: stored, enc: enc}
	if err := s.commit(st); err != nil {
		return Decky{}, err
	}
	return stored.Clone(), nil
}

// Put writes a deep copy of d in topology ("" = the fleet), replacing any
// decky of the same name and creating the topology if it does not exist.
// A bad topology ID or decky name, or a config value that is not a string,
// int, bool or []string, is an error matching ErrInvalidService.
func (s *FileStore) Put(ctx context.Context, topology string, d Decky) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckPut(topology, d); err != nil {
		return err
	}
	d = d.Clone()
	enc, err := MarshalDecky(d)
	if err != nil {
		return s.errorf("encode decky %s: %w", Ref{Topology: topology, Decky: d.Name}, err)
	}
	unlock, err := s.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.load()
	if err != nil {
		return err
	}
	sc := st.scopes[topology]
	if sc == nil {
		sc = &fsScope{entries: make(map[string]*fsEntry)}
		st.scopes[topology] = sc
	}
	if _, ok := sc.entries[d.Name]; !ok {
		i, _ := slices.BinarySearch(sc.names, d.Name)
		sc.names = slices.Insert(sc.names, i, d.Name)
	}
	sc.entries[d.Name] = &fsEntry{d: d, enc: enc}
	return s.commit(st)
}

// Delete removes the decky ref addresses. A missing topology or decky is an
// error matching ErrNotFound. The topology remains, even when it is left
// with no deckies.
func (s *FileStore) Delete(ctx context.Context, ref Ref) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ref.validate(); err != nil {
		return &Error{Op: "delete", Ref: ref, Err: err}
	}
	unlock, err := s.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.load()
	if err != nil {
		return err
	}
	if _, err := st.lookup(ref); err != nil {
		return err
	}
	sc := st.scopes[ref.Topology]
	delete(sc.entries, ref.Decky)
	if i, ok := slices.BinarySearch(sc.names, ref.Decky); ok {
		sc.names = slices.Delete(sc.names, i, i+1)
	}
	return s.commit(st)
}

// errorf returns an error naming the file:
// "servicelive: file store /x/state.json: ...".
func (s *FileStore) errorf(format string, args ...any) error {
	return fmt.Errorf("servicelive: file store %s: "+format, append([]any{s.path}, args...)...)
}

// lock takes this handle's semaphore and then the flock on the lock file,
// shared or exclusive, waiting until both are held or ctx is done. It
// returns the function that releases both.
func (s *FileStore) lock(ctx context.Context, exclusive bool) (unlock func(), err error) {
	n := int64(1)
	if exclusive {
		n = fsMaxReaders
	}
	if err := s.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	// One lock per call: each holds its own open file description, and
	// flock(2) locks conflict between those, which is what orders the
	// handles of one process.
	release, err := filelock.Lock(ctx, s.lockPath, !exclusive)
	if err != nil {
		s.sem.Release(n)
		if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
			return nil, cerr
		}
		return nil, s.errorf("%w", err)
	}
	return func() {
		release()
		s.sem.Release(n)
	}, nil
}

// LockDecky takes the cross-process lock of the decky ref addresses (which
// need not exist), waiting until it is held or ctx is done. See FileStore.
func (s *FileStore) LockDecky(ctx context.Context, ref Ref) (unlock func(), err error) {
	if err := ref.validate(); err != nil {
		return nil, &Error{Op: "lock", Ref: ref, Err: err}
	}
	s.deckiesOnce.Do(func() {
		s.deckies, s.deckiesErr = filelock.NewDir(s.path + ".locks")
	})
	if s.deckiesErr != nil {
		return nil, s.errorf("%w", s.deckiesErr)
	}
	unlock, err = s.deckies.Lock(ctx, filelock.RefName(ref.Topology, ref.Decky))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
			return nil, cerr
		}
		return nil, s.errorf("%w", err)
	}
	return unlock, nil
}

// load returns the state the file holds now; s.lock must be held. It reuses
// the cached state when the file's content has not changed.
func (s *FileStore) load() (*fsState, error) {
	buf := fsBufPool.Get().(*[]byte)
	data, err := fsReadFile(s.path, (*buf)[:0])
	switch {
	case errors.Is(err, fs.ErrNotExist):
		data = nil
	case err != nil:
		fsBufPool.Put(buf)
		return nil, s.errorf("%w", err)
	}
	s.mu.Lock()
	c := s.cache
	s.mu.Unlock()
	if c != nil && (c.raw == nil) == (data == nil) && bytes.Equal(c.raw, data) {
		if data != nil {
			*buf = data // unchanged: the buffer, grown if need be, serves again
		}
		fsBufPool.Put(buf)
		return c, nil
	}
	// data becomes the new state's raw: the pool gets a new buffer.
	*buf = nil
	fsBufPool.Put(buf)
	st, ok := fsParseLines(data, c)
	if !ok {
		if st, err = fsParse(data); err != nil {
			return nil, s.errorf("%w", err)
		}
	}
	s.mu.Lock()
	s.cache = st
	s.mu.Unlock()
	return st, nil
}

// fsBufPool holds the buffers load reads files into.
var fsBufPool = sync.Pool{New: func() any { return new([]byte) }}

// fsReadFile appends the content of the file at path to buf[:0]. The result
// is non-nil, even for an empty file.
func fsReadFile(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() < 1<<40 {
		buf = slices.Grow(buf[:0], int(info.Size())+512)
	}
	buf = buf[:0]
	if buf == nil {
		buf = make([]byte, 0, 512)
	}
	for {
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096)
		}
	}
}

// commit writes st, which the caller (holding the exclusive lock) has
// changed, and makes it the cached state. On failure it drops the cache, so
// that the next call re-reads whatever the file holds.
func (s *FileStore) commit(st *fsState) error {
	data, err := st.render()
	if err == nil {
		err = atomicfile.Write(s.path, data, 0o600) // configs may hold secrets
	}
	s.mu.Lock()
	if err != nil {
		s.cache = nil
	} else {
		st.raw = data
		s.cache = st
	}
	s.mu.Unlock()
	if err != nil {
		return s.errorf("write: %w", err)
	}
	return nil
}

// fsState is the parsed content of a FileStore file. Once cached it is only
// read, except by a writer holding the handle's exclusive lock (no reader of
// that handle runs then), which changes it in place and commits it.
type fsState struct {
	raw    []byte              // the file content st was parsed from or written as; nil: no file
	scopes map[string]*fsScope // topology ID ("" = the fleet) -> scope; the fleet is always there
}

// fsScope is the fleet or one topology.
type fsScope struct {
	names   []string // sorted
	entries map[string]*fsEntry
}

// fsEntry is one decky and, once known, its JSON form in the file.
type fsEntry struct {
	d   Decky  // never handed out without Clone
	enc []byte // nil until needed
}

// lookup returns the entry of ref or an error matching ErrNotFound.
func (st *fsState) lookup(ref Ref) (*fsEntry, error) {
	sc, ok := st.scopes[ref.Topology]
	if !ok {
		return nil, TopologyNotFound(ref.Topology)
	}
	e, ok := sc.entries[ref.Decky]
	if !ok {
		return nil, DeckyNotFound(ref)
	}
	return e, nil
}

// render returns the file content of st: one decky a line, scopes and
// deckies sorted, so equal states give equal files.
func (st *fsState) render() ([]byte, error) {
	buf := make([]byte, 0, len(st.raw)+4096)
	buf = append(buf, "{\n  \"version\": "...)
	buf = strconv.AppendInt(buf, fsFormatVersion, 10)
	buf = append(buf, ",\n  \"fleet\": "...)
	buf, err := st.scopes[""].render(buf, "  ")
	if err != nil {
		return nil, err
	}
	buf = append(buf, ",\n  \"topologies\": {"...)
	ids := make([]string, 0, len(st.scopes))
	for id := range st.scopes {
		if id != "" {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for i, id := range ids {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, "\n    "...)
		buf = strconv.AppendQuote(buf, id) // IDs are [A-Za-z0-9-]: Go and JSON quoting agree
		buf = append(buf, ": "...)
		if buf, err = st.scopes[id].render(buf, "    "); err != nil {
			return nil, err
		}
	}
	if len(ids) > 0 {
		buf = append(buf, "\n  "...)
	}
	buf = append(buf, "}\n}\n"...)
	return buf, nil
}

// render appends the JSON array of sc's deckies to buf, encoding the
// deckies that have no JSON form yet.
func (sc *fsScope) render(buf []byte, indent string) ([]byte, error) {
	if len(sc.names) == 0 {
		return append(buf, "[]"...), nil
	}
	buf = append(buf, '[')
	for i, name := range sc.names {
		e := sc.entries[name]
		if e.enc == nil {
			enc, err := MarshalDecky(e.d)
			if err != nil {
				return nil, fmt.Errorf("encode decky %s: %w", name, err)
			}
			e.enc = enc
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '\n')
		buf = append(buf, indent...)
		buf = append(buf, "  "...)
		buf = append(buf, e.enc...)
	}
	buf = append(buf, '\n')
	buf = append(buf, indent...)
	return append(buf, ']'), nil
}

// fsDoc is the JSON document of a FileStore file.
type fsDoc struct {
	Version    *int                 `json:"version"`
	Fleet      []fsDecky            `json:"fleet"`
	Topologies map[string][]fsDecky `json:"topologies"`
}

// fsParse parses the content of a FileStore file; nil data is a missing file.
func fsParse(data []byte) (*fsState, error) {
	st := &fsState{raw: data, scopes: map[string]*fsScope{}}
	if data == nil {
		st.scopes[""] = &fsScope{entries: map[string]*fsEntry{}}
		return st, nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty file")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc fsDoc
	if err := dec.Decode(&doc); err != nil {
		if v, ok := fsProbeVersion(data); ok && v != strconv.Itoa(fsFormatVersion) {
			return nil, fmt.Errorf("unsupported format version %s (want %d)", v, fsFormatVersion)
		}
		return nil, fmt.Errorf("bad JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("bad JSON: data after the document")
	}
	switch {
	case doc.Version == nil:
		return nil, errors.New("no format version")
	case *doc.Version != fsFormatVersion:
		return nil, fmt.Errorf("unsupported format version %d (want %d)", *doc.Version, fsFormatVersion)
	}
	fleet, err := fsParseScope(doc.Fleet)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	st.scopes[""] = fleet
	for id, ds := range doc.Topologies {
		if !ValidTopologyID(id) {
			return nil, fmt.Errorf("bad topology id %q", id)
		}
		sc, err := fsParseScope(ds)
		if err != nil {
			return nil, fmt.Errorf("topology %s: %w", id, err)
		}
		st.scopes[id] = sc
	}
	return st, nil
}

// fsHashSeed seeds the hashes fsParseLines indexes JSON lines by.
var fsHashSeed = maphash.MakeSeed()

// fsParseLines parses data when it is exactly what render writes (one decky
// a line), reusing every entry of prev whose line is unchanged, so that only
// the deckies another handle changed are decoded. It reports false for any
// other data (hand-edited, foreign or broken), which fsParse then handles:
// what it accepts, it has rendered back byte for byte.
func fsParseLines(data []byte, prev *fsState) (*fsState, bool) {
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, false
	}
	var index map[uint64]*fsEntry
	if prev != nil {
		index = make(map[uint64]*fsEntry, len(prev.scopes[""].names))
		for _, sc := range prev.scopes {
			for _, e := range sc.entries {
				if e.enc != nil {
					index[maphash.Bytes(fsHashSeed, e.enc)] = e
				}
			}
		}
	}
	st := &fsState{raw: data, scopes: map[string]*fsScope{}}
	var sc *fsScope
	for rest := data; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i]
		rest = rest[i+1:]
		switch trimmed := bytes.TrimLeft(line, " "); {
		case bytes.HasPrefix(trimmed, []byte(`{"`)): // a decky
			if sc == nil {
				return nil, false
			}
			enc := bytes.TrimSuffix(trimmed, []byte(","))
			e := index[maphash.Bytes(fsHashSeed, enc)]
			if e == nil || !bytes.Equal(e.enc, enc) {
				d, err := UnmarshalDecky(enc)
				if err != nil {
					return nil, false
				}
				e = &fsEntry{d: d, enc: bytes.Clone(enc)} // not pinning data once it is stale
			}
			if _, dup := sc.entries[e.d.Name]; dup {
				return nil, false
			}
			sc.entries[e.d.Name] = e
			sc.names = append(sc.names, e.d.Name)
		case bytes.HasPrefix(line, []byte(`  "fleet": [`)):
			if st.scopes[""] != nil {
				return nil, false
			}
			sc = &fsScope{entries: make(map[string]*fsEntry)}
			st.scopes[""] = sc
		case bytes.HasPrefix(line, []byte(`    "`)): // a topology
			id, _, ok := strings.Cut(string(line[len(`    "`):]), `": [`)
			if !ok || !ValidTopologyID(id) || st.scopes[id] != nil {
				return nil, false
			}
			sc = &fsScope{entries: make(map[string]*fsEntry)}
			st.scopes[id] = sc
		}
	}
	if st.scopes[""] == nil {
		return nil, false
	}
	for _, sc := range st.scopes {
		if !slices.IsSorted(sc.names) {
			return nil, false
		}
	}
	out, err := st.render()
	if err != nil || !bytes.Equal(out, data) {
		return nil, false
	}
	return st, true
}

// fsProbeVersion returns the "version" member of a document that failed to
// parse, when it has a readable one.
func fsProbeVersion(data []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var probe struct{ Version any }
	if dec.Decode(&probe) != nil {
		return "", false
	}
	n, ok := probe.Version.(json.Number)
	return string(n), ok
}

// fsParseScope checks and indexes the deckies of one scope.
func fsParseScope(ds []fsDecky) (*fsScope, error) {
	sc := &fsScope{names: make([]string, 0, len(ds)), entries: make(map[string]*fsEntry, len(ds))}
	for i := range ds {
		d, err := ds[i].decky()
		if err != nil {
			return nil, fmt.Errorf("decky %s: %w", ds[i].Name, err)
		}
		if !ValidDeckyName(d.Name) {
			return nil, fmt.Errorf("bad decky name %q", d.Name)
		}
		if _, dup := sc.entries[d.Name]; dup {
			return nil, fmt.Errorf("decky %s appears twice", d.Name)
		}
		sc.entries[d.Name] = &fsEntry{d: d}
		sc.names = append(sc.names, d.Name)
	}
	slices.Sort(sc.names)
	return sc, nil
}

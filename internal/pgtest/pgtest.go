// Package pgtest gives tests a real PostgreSQL server: a throwaway cluster
// of their own, started from the installed server binaries, or the server
// the environment variable PG_DSN names.
//
// A throwaway cluster is initdb'd into a fresh temporary directory and
// listens on a Unix socket in that directory only (listen_addresses is
// empty: no TCP port is opened, and a system cluster on port 5432 is neither
// used nor disturbed). It runs with fsync off, for speed: its figures are
// not those of a durable server. When the test process runs as root the
// cluster runs as the "postgres" system user (initdb refuses root), which
// the Debian package creates; the directory is handed to that user.
//
// Without server binaries (and without PG_DSN) a test is skipped — and
// fails when CI=true, so that CI never passes by skipping. Install them
// with Debian's "postgresql" package (binaries under
// /usr/lib/postgresql/<version>/bin), or put initdb and pg_ctl on PATH.
//
// A package whose tests need PostgreSQL keeps one Server for the whole
// test binary, started on first use and stopped by TestMain:
//
//	var pg pgtest.Server
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		pg.Stop()
//		os.Exit(code)
//	}
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.NewDatabase(t, pg.DSN(t)) // a fresh database, dropped after the test
//		...
//	}
//
// StartMain starts a cluster eagerly (for a TestMain that must hand the DSN
// to other processes); Start gives one test a cluster of its own.
//
// A cluster is stopped by Stop or the stop function; one left behind by a
// killed test binary (a -timeout panic, a SIGKILL) is stopped and removed
// by the next StartMain on the machine. None of this is for production.
package pgtest

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// EnvDSN is the environment variable that names an existing server to use
// instead of starting one, as a pgx connection string, e.g.
// "host=/var/run/postgresql user=postgres dbname=postgres". NewDatabase
// needs a role that may create databases there.
const EnvDSN = "PG_DSN"

// ErrNoServer reports that no PostgreSQL server binaries were found.
var ErrNoServer = errors.New("pgtest: no PostgreSQL server binaries (initdb, pg_ctl)")

// dirPrefix names the temporary directories of throwaway clusters.
const dirPrefix = "servicelive-pgtest-"

// Server is a throwaway PostgreSQL cluster started on first use, shared by
// the tests of one test binary. A zero Server is ready to use; it is safe
// for concurrent use.
type Server struct {
	mu      sync.Mutex
	started bool
	dsn     string
	stop    func()
	err     error
}

// DSN returns the connection string of s, starting the cluster (or taking
// PG_DSN) on the first call. Without a server it skips tb, or fails it when
// CI=true.
func (s *Server) DSN(tb testing.TB) string {
	tb.Helper()
	s.mu.Lock()
	if !s.started {
		s.started = true
		s.dsn, s.stop, s.err = StartMain()
	}
	dsn, err := s.dsn, s.err
	s.mu.Unlock()
	if err != nil {
		Require(tb, err)
	}
	return dsn
}

// Stop stops the cluster and removes its directory, if DSN started one.
// Stop before the first DSN, or a second Stop, does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		s.err = errors.New("pgtest: server stopped")
	}
	if s.stop != nil {
		s.stop()
		s.stop = nil
		s.err = errors.New("pgtest: server stopped")
	}
}

// Start gives one test a cluster of its own (or PG_DSN's server), stopped
// when the test ends, and returns its connection string. Without a server
// it skips tb, or fails it when CI=true.
func Start(tb testing.TB) string {
	tb.Helper()
	dsn, stop, err := StartMain()
	if err != nil {
		Require(tb, err)
	}
	tb.Cleanup(stop)
	return dsn
}

// Require skips tb because of err, a failure to get a server, or fails it
// when the environment variable CI is "true".
func Require(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("CI=true and no PostgreSQL server: %v", err)
	}
	tb.Skipf("no PostgreSQL server (install Debian's postgresql package, or set %s): %v", EnvDSN, err)
}

// StartMain starts a throwaway cluster and returns its connection string
// and the function that stops it and removes its files; when PG_DSN is set
// it returns that and a stop that does nothing. It is meant for TestMain,
// which has no testing.TB: a test then calls Require with the error. An
// error matches ErrNoServer when there are no server binaries.
func StartMain() (dsn string, stop func(), err error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn, func() {}, nil
	}
	bin, err := binDir()
	if err != nil {
		return "", nil, err
	}
	cred, err := credential()
	if err != nil {
		return "", nil, err
	}
	sweep(bin, cred)
	c, err := start(bin, cred)
	if err != nil {
		return "", nil, err
	}
	var once sync.Once
	return c.dsn, func() { once.Do(c.stop) }, nil
}

// cluster is one running throwaway cluster.
type cluster struct {
	bin  string
	cred *syscall.Credential
	dir  string
	dsn  string
}

func start(bin string, cred *syscall.Credential) (_ *cluster, err error) {
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &cluster{bin: bin, cred: cred, dir: dir}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	if strings.ContainsAny(dir, `'"\ `) {
		return nil, fmt.Errorf("pgtest: temporary directory %q needs quoting pg_ctl cannot do", dir)
	}
	// The owner file lets a later sweep tell a cluster whose test binary died.
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	sock := filepath.Join(dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if cred != nil {
		for _, p := range []string{dir, sock} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, fmt.Errorf("pgtest: %w", err)
			}
		}
	}
	data := filepath.Join(dir, "data")
	if err := c.run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync"); err != nil {
		return nil, err
	}
	// The socket's name holds the port; the directory is ours alone, so any
	// port will do. One per process keeps log lines apart.
	port := 20000 + os.Getpid()%40000
	opts := fmt.Sprintf("-k %s -c listen_addresses='' -p %d -c fsync=off -c synchronous_commit=off "+
		"-c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB", sock, port)
	if err := c.run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60",
		"-o", opts, "start"); err != nil {
		if log, rerr := os.ReadFile(filepath.Join(dir, "server.log")); rerr == nil {
			err = fmt.Errorf("%w\nserver log:\n%s", err, log)
		}
		return nil, err
	}
	c.dsn = fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", sock, port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ping(ctx, c.dsn); err != nil {
		return nil, err
	}
	return c, nil
}

// stop stops the cluster (if it runs) and removes its directory.
func (c *cluster) stop() {
	data := filepath.Join(c.dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
		if err := c.run("pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
			_ = c.run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
		}
	}
	_ = os.RemoveAll(c.dir)
}

// run runs one of the server binaries as the cluster's user.
func (c *cluster) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
		cmd.Env = append(os.Environ(), "HOME="+c.dir)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: %s: %w\n%s", name, err, out)
	}
	return nil
}

// binDir returns the directory of initdb and pg_ctl: the newest
// /usr/lib/postgresql/<version>/bin, else the one on PATH.
func binDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	version := func(p string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return v
	}
	slices.SortFunc(matches, func(a, b string) int { return cmp.Compare(version(b), version(a)) })
	for _, m := range matches {
		dir := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNoServer
}

// credential returns the identity to run the server binaries as: nil (this
// process's own) unless we are root, then the "postgres" user's.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root and no \"postgres\" user to run the server as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pgtest: user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// sweep stops and removes the clusters whose test binary died without
// stopping them.
func sweep(bin string, cred *syscall.Credential) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue // being set up, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // its owner lives
		}
		c := &cluster{bin: bin, cred: cred, dir: dir}
		data := filepath.Join(dir, "data")
		if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
			_ = c.run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
		}
		_ = os.RemoveAll(dir)
	}
}

// ping waits until a connection to dsn works or ctx is done.
func ping(ctx context.Context, dsn string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer db.Close()
	for {
		err := db.PingContext(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgtest: server does not answer: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var dbSeq atomic.Int64

// NewDatabase creates a fresh, empty database on the server dsn names and
// returns the connection string of that database; the database is dropped
// (its sessions ended) when tb's test ends.
func NewDatabase(tb testing.TB, dsn string) string {
	tb.Helper()
	name := fmt.Sprintf("pgtest_%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := createDatabase(ctx, dsn, name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := adminExec(ctx, dsn, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database: %v", err)
		}
	})
	out, err := WithDatabase(dsn, name)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// WithDatabase returns dsn (a URL or a keyword/value string) naming the
// database name instead of its own.
func WithDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("pgtest: dsn: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In a keyword/value string the last setting of a keyword wins.
	return dsn + " dbname=" + name, nil
}

// createDatabase creates the database name. From PostgreSQL 15 on it copies
// the template's files (STRATEGY FILE_COPY): for a small template that is a
// few times faster than the default, which writes every page to the WAL.
func createDatabase(ctx context.Context, dsn, name string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	var version int
	if err := db.QueryRowContext(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return err
	}
	query := "CREATE DATABASE " + name
	if version >= 150000 {
		query += " STRATEGY FILE_COPY"
	}
	_, err = db.ExecContext(ctx, query)
	return err
}

func adminExec(ctx context.Context, dsn, query string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, query)
	return err
}

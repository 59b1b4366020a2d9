package sqlstore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/decnet/servicelive"
	"github.com/decnet/servicelive/internal/pgtest"
)

// PG is the PostgreSQL server of this package's tests, started by the first
// test that needs it and stopped by TestMain.
var PG = new(pgtest.Server)

// The environment of a helper process (see LockHelper): it takes the lock
// of fleet decky HelperEnv's value in the store the other two variables
// name.
const (
	HelperEnv       = "SQLSTORE_TEST_LOCK_HELPER"
	HelperDriverEnv = "SQLSTORE_TEST_LOCK_DRIVER"
	HelperDSNEnv    = "SQLSTORE_TEST_LOCK_DSN"
)

func TestMain(m *testing.M) {
	if decky := os.Getenv(HelperEnv); decky != "" {
		os.Exit(lockHelper(decky))
	}
	code := m.Run()
	PG.Stop()
	if code == 0 {
		// Every goroutine a Store starts (a pool's, an abandoned lock
		// wait's) has ended once the Stores are closed.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// lockHelper is the main of a helper process: it opens the store, takes
// the lock of the fleet decky, prints "locked", and holds the lock until
// its standard input ends; then it unlocks, prints "unlocked" and exits.
func lockHelper(decky string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Open(ctx, os.Getenv(HelperDriverEnv), os.Getenv(HelperDSNEnv))
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer s.Close()
	unlock, err := s.LockDecky(ctx, servicelive.FleetDecky(decky))
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("locked")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
	}
	unlock()
	fmt.Println("unlocked")
	return 0
}

// MemLocks reports how many in-memory decky locks are held or awaited.
func MemLocks() int { return memLocks.Len() }

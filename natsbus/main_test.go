package natsbus_test

import (
	"os"
	"testing"

	"github.com/decnet/servicelive/internal/pgtest"
)

// PG is the PostgreSQL server of this package's tests, started by the first
// test that needs it and stopped by TestMain.
var PG = new(pgtest.Server)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(mutatorHelper())
	}
	code := m.Run()
	PG.Stop()
	os.Exit(code)
}

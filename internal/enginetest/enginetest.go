// Package enginetest gives tests the local Docker Engine and servicelive's
// test image. Without a usable engine a test is skipped — and fails when
// CI=true, so that CI never passes by skipping.
package enginetest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/decnet/servicelive/internal/testimage"
)

var (
	once  sync.Once
	err   error
	image string
)

// Require returns a new API client of the local engine (DOCKER_HOST or the
// default socket), closed at the end of the test, and the reference of the
// test image (built once per process by testimage.Ensure).
func Require(t testing.TB) (*client.Client, string) {
	t.Helper()
	once.Do(func() {
		var c *client.Client
		if c, err = client.New(client.FromEnv); err != nil {
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err = c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
			return
		}
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		image, err = testimage.Ensure(ctx, c)
	})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the Docker Engine is unusable: %v", err)
		}
		t.Skipf("no usable Docker Engine: %v", err)
	}
	c, cerr := client.New(client.FromEnv)
	if cerr != nil {
		t.Fatal(cerr)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, image
}

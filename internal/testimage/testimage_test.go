package testimage_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/decnet/servicelive/internal/testimage"
)

func TestEnsure(t *testing.T) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("docker engine unreachable in CI: %v", err)
		}
		t.Skipf("docker engine unreachable: %v", err)
	}
	ref, err := testimage.Ensure(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, testimage.Repository+":") || len(ref) != len(testimage.Repository)+13 {
		t.Errorf("ref %q, want %s:<hash12>", ref, testimage.Repository)
	}
	img, err := c.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.Config == nil || strings.Join(img.Config.Entrypoint, " ") != "/app" || strings.Join(img.Config.Cmd, " ") != testimage.ModeBase {
		t.Errorf("image config %+v", img.Config)
	}
	again, err := testimage.Ensure(ctx, c)
	if err != nil || again != ref {
		t.Errorf("second Ensure: %q, %v; want %q", again, err, ref)
	}

	dir := t.TempDir()
	if err := testimage.WriteContext(ctx, c, dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Dockerfile", "app"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if got := testimage.Command(testimage.ModeBanner); len(got) != 1 || got[0] != "banner" {
		t.Errorf("Command(banner) = %v", got)
	}
}

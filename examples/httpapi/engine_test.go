package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive/internal/enginetest"
)

// engineClient returns an Engine API client, skipping the test when no
// engine answers — except under CI=true, where that is a failure.
func engineClient(t *testing.T) client.APIClient {
	t.Helper()
	api, _ := enginetest.Require(t)
	return api
}

// TestEngine runs the server with -engine on the real Docker Engine, under
// its own compose project names: it deploys the demo deckies, adds a
// service through the API (the container runs, in the base's network
// namespace, and answers with the configured banner), removes it, and tears
// everything down on shutdown.
func TestEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("real engine: skipped with -short")
	}
	api := engineClient(t)
	project := "httpapitest-" + strings.ToLower(rand.Text()[:8])
	containers := func(ctx context.Context, labels ...string) []string {
		t.Helper()
		f := client.Filters{}.Add("label", labels...)
		res, err := api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
		require.NoError(t, err)
		var names []string
		for _, c := range res.Items {
			if p := c.Labels["com.docker.compose.project"]; p == project || strings.HasPrefix(p, project+"_") {
				names = append(names, strings.TrimPrefix(c.Names[0], "/")+":"+string(c.State))
			}
		}
		return names
	}
	t.Cleanup(func() { // only does something when the test failed half-way
		ctx := context.Background()
		res, err := api.ContainerList(ctx, client.ContainerListOptions{All: true})
		if err != nil {
			return
		}
		for _, c := range res.Items {
			if p := c.Labels["com.docker.compose.project"]; p == project || strings.HasPrefix(p, project+"_") {
				_, _ = api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
			}
		}
		nets, err := api.NetworkList(ctx, client.NetworkListOptions{})
		if err != nil {
			return
		}
		for _, n := range nets.Items {
			if strings.HasPrefix(n.Name, project) {
				_, _ = api.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
			}
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := new(syncBuffer)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-engine", "-addr", "127.0.0.1:0", "-token", testToken, "-fleet-project", project},
			func(string) string { return "" }, stderr)
	}()
	var addr string
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			require.FailNow(t, "run returned early", "%v\n%s", err, stderr)
		default:
		}
		_, rest, ok := strings.Cut(stderr.String(), "msg=serving addr=")
		addr, _, _ = strings.Cut(rest, " ")
		return ok
	}, 3*time.Minute, 50*time.Millisecond, "server did not start: %s", stderr)

	assert.ElementsMatch(t, []string{project + ".web1:running", project + ".web1.http:running", project + ".web2:running"},
		containers(ctx, "servicelive.topology="), "the fleet is deployed")

	call := func(method, path, body string) (int, deckyResponse) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, addr+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var got deckyResponse
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		return resp.StatusCode, got
	}

	code, got := call("POST", "/api/v1/deckies/web2/services", `{"name": "ssh", "config": {"port": 2222, "banner": "SSH-2.0-httpapi-test"}}`)
	require.Equal(t, http.StatusCreated, code, "%s", stderr)
	assert.Equal(t, []string{"ssh"}, got.Services)
	assert.Equal(t, []string{project + ".web2.ssh:running"}, containers(ctx, "servicelive.decky=web2", "servicelive.service=ssh"))

	// The service answers on the base's address: it shares its namespace.
	base, err := api.ContainerInspect(ctx, project+".web2", client.ContainerInspectOptions{})
	require.NoError(t, err)
	var ip string
	for _, ep := range base.Container.NetworkSettings.Networks {
		ip = ep.IPAddress.String()
	}
	// Running is not listening yet: the service may still be binding its port.
	var conn net.Conn
	require.Eventually(t, func() bool {
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(ip, "2222"), time.Second)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "dial the service through the base's IP")
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, conn.Close())
	require.NoError(t, err)
	assert.Equal(t, "SSH-2.0-httpapi-test\r\n", line)

	code, got = call("DELETE", "/api/v1/deckies/web2/services/ssh", "")
	require.Equal(t, http.StatusOK, code, "%s", stderr)
	assert.Empty(t, got.Services)
	assert.Empty(t, containers(ctx, "servicelive.decky=web2", "servicelive.service=ssh"), "the container is gone")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "%s", stderr)
	case <-time.After(time.Minute):
		t.Fatalf("run did not return after cancel: %s", stderr)
	}
	assert.Empty(t, containers(context.Background(), "servicelive.decky"), "torn down at exit (in-memory state)")
}

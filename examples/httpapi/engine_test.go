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
// namespace, and answers with the configured banner), reconfigures it
// (stored only: the container is untouched; then applied: only its
// container is recreated, and answers with the new banner on the new port),
// reads the decky back, removes the service, and tears everything down on
// shutdown.
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

	send := func(method, path, body string, v any) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, addr+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
		return resp.StatusCode
	}
	call := func(method, path, body string) (int, deckyResponse) {
		t.Helper()
		var got deckyResponse
		return send(method, path, body, &got), got
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
	assert.Equal(t, "SSH-2.0-httpapi-test\r\n", readLine(t, net.JoinHostPort(ip, "2222")))

	// Reconfigured without ?apply: stored, the container keeps running as it was.
	id := func(name string) string {
		t.Helper()
		in, err := api.ContainerInspect(ctx, project+"."+name, client.ContainerInspectOptions{})
		require.NoError(t, err)
		return in.Container.ID + " " + in.Container.State.StartedAt
	}
	baseID, sshID := id("web2"), id("web2.ssh")
	var conf configResponse
	require.Equal(t, http.StatusOK, send("PUT", "/api/v1/deckies/web2/services/ssh/config", `{"port": 2222, "banner": "SSH-2.0-reconfigured"}`, &conf), "%s", stderr)
	assert.Equal(t, configResponse{DeckyName: "web2", Service: "ssh", ConfigKeys: []string{"banner", "port"}}, conf)
	assert.Equal(t, sshID, id("web2.ssh"), "not applied: the container is untouched")
	assert.Equal(t, "SSH-2.0-httpapi-test\r\n", readLine(t, net.JoinHostPort(ip, "2222")))

	// With ?apply=true: that container, and only it, is recreated with it.
	require.Equal(t, http.StatusOK, send("PUT", "/api/v1/deckies/web2/services/ssh/config?apply=true", `{"port": 2223, "banner": "SSH-2.0-applied"}`, &conf), "%s", stderr)
	assert.Equal(t, configResponse{DeckyName: "web2", Service: "ssh", ConfigKeys: []string{"banner", "port"}, Applied: true}, conf)
	assert.NotEqual(t, sshID, id("web2.ssh"), "recreated")
	assert.Equal(t, baseID, id("web2"), "the base is untouched")
	assert.Equal(t, "SSH-2.0-applied\r\n", readLine(t, net.JoinHostPort(ip, "2223")))

	// The read shows the keys, never the values.
	var view deckyView
	require.Equal(t, http.StatusOK, send("GET", "/api/v1/deckies/web2", "", &view))
	assert.Equal(t, deckyView{DeckyName: "web2", Services: []string{"ssh"}, ConfigKeys: map[string][]string{"ssh": {"banner", "port"}}}, view)
	var scope scopeResponse
	require.Equal(t, http.StatusOK, send("GET", "/api/v1/deckies", "", &scope))
	require.Len(t, scope.Deckies, 2)
	assert.Equal(t, []string{"http"}, scope.Deckies[0].Services)

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

// readLine dials addr until it answers (a container that runs may still be
// binding its port) and returns the first line it writes.
func readLine(t *testing.T, addr string) string {
	t.Helper()
	var conn net.Conn
	require.Eventually(t, func() bool {
		var err error
		conn, err = net.DialTimeout("tcp", addr, time.Second)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "dial %s", addr)
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, conn.Close())
	require.NoError(t, err)
	return line
}

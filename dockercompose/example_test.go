package dockercompose_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/decnet/servicelive/dockercompose"
)

// Example brings up a decky's base, then a service sharing its network
// namespace, then takes the service down and removes the whole project.
func Example() {
	ctx := context.Background()
	c, err := dockercompose.New(dockercompose.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	web1 := types.ServiceConfig{Name: "web1", ContainerName: "demo.web1"}
	web1.Image = "servicelive-test:latest" // a local image
	ssh := types.ServiceConfig{Name: "web1-ssh", ContainerName: "demo.web1.ssh"}
	ssh.NetworkMode = "service:web1"
	ssh.Image = "servicelive-test:latest"
	ssh.Command = types.ShellCommand{"banner"}
	project := &types.Project{
		Name:     "demo",
		Services: types.Services{"web1": web1, "web1-ssh": ssh},
	}

	for _, s := range []string{"web1", "web1-ssh"} {
		if err := c.Up(ctx, project, s); err != nil {
			var ce *dockercompose.ContainerError
			if errors.As(err, &ce) {
				fmt.Println("last log lines:", ce.Logs)
			}
			fmt.Println(err)
			return
		}
	}
	if err := c.Down(ctx, project, "web1-ssh"); err != nil {
		fmt.Println(err)
	}
	if err := c.RemoveProject(ctx, project); err != nil {
		fmt.Println(err)
	}
}

// ExampleWithProgress prints the progress of each call.
func ExampleWithProgress() {
	c, err := dockercompose.New(
		dockercompose.WithProgress(func(e dockercompose.Event) {
			fmt.Printf("%s %s/%s: %s %s\n", e.Op, e.Project, e.Service, e.Resource, e.Text)
		}),
		dockercompose.WithStopTimeout(5*time.Second),
		dockercompose.WithStartGrace(200*time.Millisecond),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	// c.Up(ctx, project, "web1-ssh") prints, e.g.:
	//   up demo/web1-ssh: Container demo.web1.ssh Creating
	//   up demo/web1-ssh: Container demo.web1.ssh Created
	//   up demo/web1-ssh: Container demo.web1.ssh Starting
	//   up demo/web1-ssh: Container demo.web1.ssh Started
	//   up demo/web1-ssh: Container demo.web1.ssh Running
}

// ExampleBuildError builds a service's image with BuildKit (in-process,
// whatever DOCKER_BUILDKIT says) and reports the failing Dockerfile step of
// a failed build.
func ExampleBuildError() {
	c, err := dockercompose.New(dockercompose.WithBuildKit(true))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	report := func(err error) {
		var be *dockercompose.BuildError
		if errors.As(err, &be) {
			fmt.Printf("step %q failed: %s\n", be.Step, be.Message)
			for _, line := range be.Logs {
				fmt.Println("  ", line)
			}
		}
	}
	// report(c.Up(ctx, project, "web1-http")) prints, for a RUN that fails:
	//   step "[2/2] RUN [\"/app\", \"fail\"]" failed: executor failed running [/app fail]: exit code: 1
	//      servicelive-test: fail mode: exiting with status 1
	_ = report
}

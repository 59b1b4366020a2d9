// Package dockercompose implements servicelive.Composer on the Docker Compose
// SDK, in-process.
package dockercompose

import (
	_ "github.com/compose-spec/compose-go/v2/loader"
	_ "github.com/docker/cli/cli/command"
	_ "github.com/docker/cli/cli/flags"
	_ "github.com/docker/compose/v5/pkg/api"
	_ "github.com/docker/compose/v5/pkg/compose"
	_ "github.com/gofrs/flock"
	_ "github.com/moby/moby/client"
	_ "github.com/stretchr/testify/require"
	_ "go.uber.org/goleak"
	_ "golang.org/x/sync/errgroup"
)

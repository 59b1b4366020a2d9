package main

import (
	"context"
	"log/slog"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/decnet/servicelive"
)

var _ servicelive.Composer = (*logComposer)(nil)

// logComposer is a stand-in servicelive.Composer: it logs each Up and Down
// and does nothing else — no container is started or removed. It lets the
// server run, and be tried with curl, on a machine without a Docker Engine.
// Run with -engine to drive a real engine instead.
type logComposer struct {
	log *slog.Logger
}

// Up logs the service that a real Composer would create and start.
func (c *logComposer) Up(ctx context.Context, project *types.Project, service string) error {
	c.log.LogAttrs(ctx, slog.LevelInfo, "composer: up (stand-in, nothing started)",
		slog.String("project", project.Name), slog.String("service", service))
	return ctx.Err()
}

// Down logs the service that a real Composer would stop and remove.
func (c *logComposer) Down(ctx context.Context, project *types.Project, service string) error {
	c.log.LogAttrs(ctx, slog.LevelInfo, "composer: down (stand-in, nothing removed)",
		slog.String("project", project.Name), slog.String("service", service))
	return ctx.Err()
}

package dockercompose

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// engineClient is the API client the Compose SDK gets: the Composer's client
// with NetworkCreate made safe for concurrent Ups.
//
// Engines before API 1.44 (Docker 20.10 speaks 1.41) create a second network
// with the same name unless the request sets CheckDuplicate, which
// moby/moby/client v0.6.1 no longer sends. Two concurrent Ups of the first
// services of a project would then each create "<project>_default", and the
// next container create fails on the ambiguous name. Here creations are
// serialised within the Composer and a network that already exists by that
// exact name is reported as a conflict, which the SDK treats as "already
// there".
type engineClient struct {
	client.APIClient

	netMu sync.Mutex
}

// NetworkCreate creates network name unless a network of that exact name
// exists already (then it returns a conflict error, as API ≥ 1.44 engines do).
func (e *engineClient) NetworkCreate(ctx context.Context, name string, options client.NetworkCreateOptions) (client.NetworkCreateResult, error) {
	e.netMu.Lock()
	defer e.netMu.Unlock()
	res, err := e.APIClient.NetworkList(ctx, client.NetworkListOptions{
		Filters: make(client.Filters).Add("name", name),
	})
	if err != nil {
		return client.NetworkCreateResult{}, err
	}
	for _, n := range res.Items {
		if n.Name == name {
			return client.NetworkCreateResult{ID: n.ID}, fmt.Errorf("network with name %s already exists: %w", name, errdefs.ErrConflict)
		}
	}
	return e.APIClient.NetworkCreate(ctx, name, options)
}

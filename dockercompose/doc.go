// Package dockercompose implements servicelive.Composer on the Docker Compose
// SDK (github.com/docker/compose/v5), in-process.
package dockercompose

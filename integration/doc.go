// Package integration holds servicelive's end-to-end tests: a Manager
// driving a real Docker Engine through package dockercompose, asserted
// through the Engine API. They skip when no engine answers, and fail when
// CI=true.
package integration

// Package hosts holds servicelive's end-to-end tests with two real Docker
// engines: the local one and a second dockerd the tests start
// (internal/dockerdtest), one Manager driving both through
// dockercompose.Hosts. They skip when either engine is missing, and fail
// when CI=true.
package hosts

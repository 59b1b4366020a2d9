// Package bench measures servicelive against a real Docker Engine: the
// library's AddService/RemoveService (package dockercompose, in-process
// Compose SDK), the seed's way (the compose v2 CLI as a subprocess on the
// same compose file) and the engine's floor (raw Engine API calls of the
// same container config), in paired rounds, plus 50 concurrent adds.
//
// Everything is in the package's benchmarks (bench_test.go): plain
// `go test ./...` runs none of them and touches no engine. bench/run.sh
// builds the compose v2 CLI into a temporary directory, runs them and
// writes BENCHMARKS.md at the repository root:
//
//	bench/run.sh
//
// The benchmarks skip unless SERVICELIVE_BENCH_ENGINE=1; BenchmarkPaired
// also needs SERVICELIVE_BENCH_COMPOSE, the path of a standalone
// docker-compose v2 binary. Every container and network they create
// belongs to a compose project named "slbench-<random>" and is removed at
// the end, on failure and on SIGINT/SIGTERM too.
package bench

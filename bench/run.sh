#!/usr/bin/env bash
# Runs servicelive's real-engine benchmark and writes BENCHMARKS.md at the
# repository root.
#
#   bench/run.sh
#
# Needs a Docker Engine (DOCKER_HOST or the local socket), the docker CLI
# (for the engine's version only), a Go toolchain and the Go module proxy.
# It runs the compose v2 CLI (github.com/docker/compose/v2 v2.40.3, what the
# seed runs) that .ci/compose-cli builds from the module proxy once into a
# cache directory: the binary is never committed. SERVICELIVE_BENCH_COMPOSE
# set to an existing docker-compose v2 binary skips it.
#
# Knobs (environment): SERVICELIVE_BENCH_ROUNDS (paired rounds, default 100),
# SERVICELIVE_BENCH_CONC_ROUNDS (default 10), SERVICELIVE_BENCH_CONC_N
# (default 50), SERVICELIVE_BENCH_SCOPE_N (other containers in the large
# scope, default 500), SERVICELIVE_BENCH_SCOPE_ROUNDS (default 20),
# SERVICELIVE_BENCH_PROFILE_N (library add/remove pairs under the CPU
# profiler, default 40), SERVICELIVE_BENCH_QUIET_WAIT (default 900 s),
# BENCHMARKS_OUT (default BENCHMARKS.md).
#
#   bench/run.sh scale
#
# runs only BenchmarkFleetScale (add/remove with 0, 500 and 2,000 other
# containers in the project: SERVICELIVE_BENCH_SCALE_SIZES, default
# "500,2000"; SERVICELIVE_BENCH_SCALE_ROUNDS, default 15) and BenchmarkBuild
# (BuildKit against the classic builder: SERVICELIVE_BENCH_BUILD_ROUNDS,
# default 10), writes their section to bench/SCALE.md and puts it in place in
# BENCHMARKS.md, leaving the other sections alone (no compose CLI needed).
# The full run includes them too.
set -euo pipefail
mode=${1:-all}
cd "$(dirname "$0")/.."
root=$PWD
out=${BENCHMARKS_OUT:-$root/BENCHMARKS.md}
compose_version=v2.40.3
compose_module=github.com/docker/compose/v2

tmp=$(mktemp -d -t slbench-XXXXXX)
# sweep removes whatever the benchmark left behind (it cleans up after
# itself, this is the backstop for a kill -9): every container and network
# of a compose project named slbench-*.
sweep() {
	local ids
	ids=$(docker ps -aq --filter label=com.docker.compose.project --format '{{.ID}} {{.Label "com.docker.compose.project"}}' 2>/dev/null | awk '$2 ~ /^slbench-/ {print $1}')
	[ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
	ids=$(docker network ls -q --filter label=com.docker.compose.project --format '{{.ID}} {{.Label "com.docker.compose.project"}}' 2>/dev/null | awk '$2 ~ /^slbench-/ {print $1}')
	[ -z "$ids" ] || docker network rm $ids >/dev/null 2>&1 || true
}
cleanup() {
	sweep
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '== %s\n' "$*" >&2; }

docker version --format '{{.Server.Version}}' >/dev/null || { echo "docker engine unreachable" >&2; exit 1; }

# The compose v2 CLI, built once by .ci/compose-cli (the interop tests run
# the same binary).
compose_build_note=""
compose=${SERVICELIVE_BENCH_COMPOSE:-}
if [ "$mode" = scale ]; then
	compose=none
	compose_build_note="not used"
elif [ -z "$compose" ]; then
	step "the compose v2 CLI $compose_version (.ci/compose-cli)"
	compose=$(bash .ci/compose-cli)
	compose_build_note="built by \`.ci/compose-cli\` from \`$compose_module@$compose_version\` (downloaded from the Go module proxy and built inside its own module: \`go install\` refuses its exclude directives)"
else
	compose_build_note="given by SERVICELIVE_BENCH_COMPOSE"
fi
[ "$compose" = none ] || compose_ver=$("$compose" version --short 2>/dev/null || "$compose" version)

step "building the benchmark"
go test -c -o "$tmp/bench.test" ./bench

# Other work on the machine (or on the engine) skews the figures: before
# each benchmark, wait up to SERVICELIVE_BENCH_QUIET_WAIT seconds (default
# 900) for the 1-minute load average to drop below 1; the load before and
# after each benchmark goes into the report.
load() { cut -d' ' -f1 /proc/loadavg; }
quiet() {
	local waited=0 max=${SERVICELIVE_BENCH_QUIET_WAIT:-900}
	while awk -v l="$(load)" 'BEGIN {exit !(l >= 1.0)}' && [ "$waited" -lt "$max" ]; do
		[ "$waited" -eq 0 ] && step "waiting for the machine to be quiet (load $(load))"
		sleep 10
		waited=$((waited + 10))
	done
}
loads=""
# bench NAME ARGS...: runs benchmark NAME of the test binary after quiet.
bench() {
	local name=$1 before others
	shift
	quiet
	before=$(load)
	others=$(docker ps -q | wc -l)
	step "running $name (load $before, $others containers running)"
	(cd bench && "$tmp/bench.test" -test.run '^$' -test.bench "^$name\$" "$@") | tee -a "$tmp/bench.log" >&2
	loads="$loads| $name | $before | $(load) | $others |
"
}
mkdir -p "$tmp/report"
export SERVICELIVE_BENCH_ENGINE=1 SERVICELIVE_BENCH_COMPOSE="$compose" SERVICELIVE_BENCH_REPORT_DIR="$tmp/report"

# scale_section runs the fleet-scale and build benchmarks and writes their
# section, bench/SCALE.md.
scale_section() {
	local before after
	before=$(load)
	bench BenchmarkFleetScale -test.benchtime 1x -test.timeout 60m
	bench BenchmarkBuild -test.benchtime 1x -test.timeout 30m
	after=$(load)
	{
		echo "<!-- bench/SCALE.md: written by bench/run.sh (scale) on $(date -u '+%Y-%m-%d %H:%M UTC'); 1-minute load $before before, $after after; Docker Engine $(docker version --format '{{.Server.Version}}'), storage driver $(docker info --format '{{.Driver}}') -->"
		cat "$tmp/report/scale.md" "$tmp/report/build.md"
		echo "Reproduce: \`bench/run.sh scale\` (this section only) or \`bench/run.sh\`."
		echo
	} >bench/SCALE.md
}
if [ "$mode" = scale ]; then
	scale_section
	# Put the section in place: replace the one there (from its heading to
	# the next section of another origin), else insert it before
	# "## Reproduce".
	step "writing the scale section of $out"
	awk -v sec=bench/SCALE.md '
		function emit() { while ((getline l < sec) > 0) print l; close(sec); done = 1 }
		/^<!-- bench\/SCALE.md/ { skip = 1; if (!done) emit(); next }
		skip && /^## / && !/^## (Fleet scale|Builds: BuildKit)/ { skip = 0 }
		skip { next }
		/^## Reproduce/ && !done { emit() }
		{ print }
	' "$out" >"$out.tmp"
	mv "$out.tmp" "$out"
	step "done: $out"
	exit 0
fi

t0=$(date +%s)
bench BenchmarkPaired -test.benchtime 1x -test.timeout 30m
bench BenchmarkConcurrent -test.benchtime 1x -test.timeout 30m
bench BenchmarkAPICalls -test.benchtime 1x -test.timeout 10m
bench BenchmarkLargeScope -test.benchtime 1x -test.timeout 20m
bench BenchmarkLibraryAddRemove -test.benchtime "${SERVICELIVE_BENCH_PROFILE_N:-40}x" -test.timeout 10m \
	-test.cpuprofile "$tmp/lib.cpu"
scale_section
took=$(($(date +%s) - t0))
pprof_top=$(go tool pprof -top -nodecount=25 "$tmp/bench.test" "$tmp/lib.cpu" 2>/dev/null | sed -n '/^Duration/,$p')
pprof_cum=$(go tool pprof -top -cum -nodecount=25 -focus 'servicelive\.\(\*Manager\)' "$tmp/bench.test" "$tmp/lib.cpu" 2>/dev/null | sed -n '/^Showing nodes/,$p')
lib_pair=$(awk '/^BenchmarkLibraryAddRemove/ {print $3/1e6; exit}' "$tmp/bench.log")

step "writing $out"
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
{
	cat <<EOF
# Benchmarks

Written by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); the benchmarks took ${took} s (waits for a quiet machine included).
Everything below comes from one run on one engine: the paired rounds, the
concurrency rounds and the API call timelines (Go benchmarks in
\`bench/bench_test.go\`, which plain \`go test ./...\` does not run).

## Machine

| | |
|---|---|
| CPU | $cpu_model, $(nproc) cores |
| memory | $mem |
| kernel | $(uname -sr) |
| Docker Engine | $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'), storage driver $(docker info --format '{{.Driver}}'), containerd $(docker version --format '{{range .Server.Components}}{{if eq .Name "containerd"}}{{.Version}}{{end}}{{end}}') |
| Go | $(go version | cut -d' ' -f3-) |
| compose v2 CLI | $compose_ver ($compose_build_note) |

Other work on the machine skews the figures; the benchmark waits for a
1-minute load average below 1 (at most ${SERVICELIVE_BENCH_QUIET_WAIT:-900} s) before each part:

| part | load before | load after | containers running before |
|---|---:|---:|---:|
$loads
## Targets

| figure | value | target | |
|---|---:|---:|---|
$(cat "$tmp/report/paired.summary.md" "$tmp/report/concurrent.summary.md")

(a) = lib, (b) = cli, (c) = raw below. A ratio or difference "of paired
rounds" is computed per round (the paths of one round ran back to back) and
its median taken over the rounds.

$(cat "$tmp/report/paired.md")
$(cat "$tmp/report/concurrent.md")
$(cat "$tmp/report/calls.md")
$(cat "$tmp/report/scope.md")
## CPU profile of the library path

\`BenchmarkLibraryAddRemove\`: ${SERVICELIVE_BENCH_PROFILE_N:-40} AddService + RemoveService
pairs through \`dockercompose.New()\` defaults under \`-cpuprofile\`, ${lib_pair} ms per
pair. The profile covers the whole benchmark process (the setup too): the
library's own CPU per mutation is the small part of the sampled time; the
rest of each mutation's wall time is spent waiting for the engine (see the
timelines above).

<details><summary>pprof -top</summary>

\`\`\`
$pprof_top
\`\`\`

</details>

<details><summary>pprof -top -cum, focused on Manager methods</summary>

\`\`\`
$pprof_cum
\`\`\`

</details>

EOF
	# The sections measured by hand or by `bench/run.sh scale`, kept as they are.
	for section in NOTES STORES SCALE NATS HOSTS; do
		if [ -f "bench/$section.md" ]; then
			cat "bench/$section.md"
			echo
		fi
	done
	cat <<EOF
## Reproduce

\`\`\`
bench/run.sh
\`\`\`

The raw benchmark output is printed on stderr. Every container and network
the benchmark creates belongs to a compose project named \`slbench-<random>\`
and is removed at the end, also on failure or interrupt.
EOF
} >"$out.tmp"
mv "$out.tmp" "$out"
step "done: $out"

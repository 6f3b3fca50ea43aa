#!/usr/bin/env bash
# Figures for BENCHMARKS.md, rerunnable: bash bench/run.sh [runs]
# Builds in release mode, then measures in one run each:
#  - spawn throughput: 1,000 /bin/true through `drover run`, 64 at once, against xargs -P 64;
#  - completion latency, slot hand-off and memory with 500 running tasks (drover-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}

swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d /tmp/drover-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), runs per figure: $runs (median)"
echo

for _ in $(seq 1000); do echo '{"command": ["/bin/true"]}'; done > "$work/true.jsonl"
echo '{"background_task": {"providerConcurrency": {"local": 64}}}' > "$work/limit64.jsonc"

elapsed_ms() {
  local start end
  start=$(date +%s%N)
  "$@" >/dev/null 2>&1
  end=$(date +%s%N)
  echo $(( (end - start) / 1000000 ))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

xargs_times=()
drover_times=()
# Results are kept until the end: deleting thousands of files on a filesystem mounted with
# `discard` makes the next syncs wait behind the discards, which would measure rm, not drover.
# `sync` before each timed run keeps earlier writeback out of it.
for run in $(seq "$runs"); do
  sync
  xargs_times+=("$(elapsed_ms sh -c 'seq 1000 | xargs -P 64 -n 1 /bin/true')")
  sync
  drover_times+=("$(elapsed_ms "$bin/drover" run "$work/true.jsonl" --results "$work/run$run" --config "$work/limit64.jsonc")")
done
x=$(printf '%s\n' "${xargs_times[@]}" | median)
d=$(printf '%s\n' "${drover_times[@]}" | median)
echo "spawn throughput, 1,000 x /bin/true, 64 at once:"
echo "  xargs -P 64:   ${x} ms   (runs: ${xargs_times[*]})"
echo "  drover run:    ${d} ms   (runs: ${drover_times[*]}; every task's files written and synced)"
awk -v d="$d" -v x="$x" 'BEGIN { printf "  ratio drover/xargs: %.2f (target: at most 1.25)\n\n", d / x }'

sync
"$bin/drover-bench" "$work/bench"

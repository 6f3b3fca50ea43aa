#!/usr/bin/env bash
# drover against xargs -P, GNU parallel and task-spooler on the same 1,000 trivial commands
# at 1, 8 and 64 at once, and against GNU parallel with --timeout and --results for the
# result-collecting case. Rerunnable: bash bench/peers.sh [runs]   (needs: parallel task-spooler)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
for tool in parallel tsp; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y parallel task-spooler" >&2; exit 2; }
done
swift build -c release >/dev/null
drover="$(swift build -c release --show-bin-path)/drover"
work=$(mktemp -d /tmp/drover-peers-XXXXXX)
export TS_SOCKET="$work/tsp.socket"
# tsp keeps each job's output in $TMPDIR/ts-out.*: keep those in the work folder too.
export TMPDIR="$work"
cleanup() { tsp -K >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

for _ in $(seq 1000); do echo '{"command": ["/bin/true"]}'; done > "$work/true.jsonl"
ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_ms() { local s e; sync; s=$(ms); "$@" >/dev/null 2>&1; e=$(ms); echo $((e - s)); }

tsp_run() {  # slots
  tsp -K >/dev/null 2>&1 || true
  tsp -S "$1" >/dev/null
  for _ in $(seq 1000); do tsp /bin/true >/dev/null; done
  tsp -w >/dev/null 2>&1 || true
  while tsp | grep -q -E ' (running|queued) '; do sleep 0.01; done
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r); $runs runs each, median"
printf "%-8s %10s %10s %10s %10s   %s\n" "at once" "drover" "xargs" "parallel" "tsp" "drover/xargs, parallel/drover"
for jobs in 1 8 64; do
  echo "{\"background_task\": {\"providerConcurrency\": {\"local\": $jobs}}}" > "$work/c$jobs.jsonc"
  d=(); x=(); p=(); t=()
  for run in $(seq "$runs"); do
    d+=("$(time_ms "$drover" run "$work/true.jsonl" --results "$work/r$jobs-$run" --config "$work/c$jobs.jsonc")")
    x+=("$(time_ms sh -c "seq 1000 | xargs -P $jobs -n 1 /bin/true")")
    p+=("$(time_ms sh -c "seq 1000 | parallel --will-cite -j $jobs /bin/true")")
    s=$(ms); tsp_run "$jobs"; e=$(ms); t+=($((e - s)))
  done
  dm=$(printf '%s\n' "${d[@]}" | median); xm=$(printf '%s\n' "${x[@]}" | median)
  pm=$(printf '%s\n' "${p[@]}" | median); tm=$(printf '%s\n' "${t[@]}" | median)
  printf "%-8s %8s ms %7s ms %7s ms %7s ms   %s\n" "$jobs" "$dm" "$xm" "$pm" "$tm" \
    "$(awk -v d="$dm" -v x="$xm" -v p="$pm" 'BEGIN { printf "%.2f, %.1f", d / x, p / d }')"
done

echo
echo '{"background_task": {"providerConcurrency": {"local": 64}}}' > "$work/c64.jsonc"
for _ in $(seq 1000); do echo '{"command": ["/bin/true"], "ttl": "10s"}'; done > "$work/ttl.jsonl"
d=(); p=()
for run in $(seq "$runs"); do
  d+=("$(time_ms "$drover" run "$work/ttl.jsonl" --results "$work/collect-d$run" --config "$work/c64.jsonc")")
  p+=("$(time_ms sh -c "seq 1000 | parallel --will-cite -j 64 --timeout 10 --results $work/collect-p$run /bin/true")")
done
dm=$(printf '%s\n' "${d[@]}" | median); pm=$(printf '%s\n' "${p[@]}" | median)
echo "collecting results with a timeout, 64 at once: drover ${dm} ms, parallel --timeout --results ${pm} ms ($(awk -v d="$dm" -v p="$pm" 'BEGIN { printf "%.1f", p / d }')x)"

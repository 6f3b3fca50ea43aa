#!/usr/bin/env bash
# Daemon figures for BENCHMARKS.md, rerunnable: bash bench/daemon.sh
#  - launch cost: 1,000 `drover launch` from a shell loop into an empty daemon, then 1,000
#    more into one that knows 10,000 tasks;
#  - `drover status --json` with 10,000 tasks known;
#  - notification latency: result frame -> the line on `events --follow`.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
drover="$bin/drover"
work=$(mktemp -d /tmp/drover-daemon-bench-XXXXXX)
cleanup() {
  for s in "$work"/empty "$work"/known "$work"/latency; do "$drover" shutdown --state-dir "$s" --no-autostart >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Launched tasks wait behind one that holds the only slot, so the figure is the launch path
# alone, not 1,000 workers competing for the 2 cores.
cat > "$work/config.jsonc" <<'JSON'
{ "background_task": { "providerConcurrency": { "mock": 1 } } }
JSON

ms() { date +%s%3N; }

launches() {  # state folder -> ms per launch over 1,000 launches
  local state=$1 start end
  "$drover" launch --state-dir "$state" --config "$work/config.jsonc" --agent explore --prompt "@hang" >/dev/null
  start=$(ms)
  for i in $(seq 1000); do
    "$drover" launch --state-dir "$state" --agent explore --prompt "task $i" >/dev/null
  done
  end=$(ms)
  awk -v t=$((end - start)) 'BEGIN { printf "%.2f", t / 1000 }'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r)"
empty=$(launches "$work/empty")
python3 bench/make_tasks.py "$work/known" 10000
known=$(launches "$work/known")
echo "launch cost, 1,000 launches from a shell loop:"
echo "  into an empty daemon:              ${empty} ms per launch"
echo "  into a daemon knowing 10,000 tasks: ${known} ms per launch"
awk -v a="$empty" -v b="$known" 'BEGIN { printf "  ratio: %.2f (target: at most 1.2)\n", b / a }'

times=()
for _ in 1 2 3 4 5; do
  start=$(ms); "$drover" status --json --state-dir "$work/known" >/dev/null; end=$(ms)
  times+=($((end - start)))
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
echo "drover status --json with 11,001 tasks known: median ${median} ms (runs: ${times[*]}; target: under 100 ms)"

"$drover" status --state-dir "$work/latency" >/dev/null
python3 bench/events_latency.py "$work/latency" 100

#!/usr/bin/env bash
# Metrics scrape cost (issue 17), release build: a daemon with --metrics-listen and 1,000
# running tasks (mock agent `@hang`, a pool limit of 2,000), then 50 GET /metrics one after
# another (curl) and 20 `drover metrics`; prints the median and the slowest, and the size.
# Usage: bash bench/metrics.sh [tasks]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-1000}
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
drover="$bin/drover"
work=$(mktemp -d /tmp/drover-metrics-bench-XXXXXX)
state="$work/state"
serve=""
cleanup() {
  "$drover" cancel --all --state-dir "$state" --no-autostart >/dev/null 2>&1 || true
  "$drover" shutdown --state-dir "$state" --no-autostart >/dev/null 2>&1 || true
  [ -n "$serve" ] && wait "$serve" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/config.jsonc" <<'JSON'
{ "background_task": { "providerConcurrency": { "mock": 2000 }, "minIdleTime": 0, "stablePolls": 0 } }
JSON
"$drover" serve --state-dir "$state" --config "$work/config.jsonc" --metrics-listen 127.0.0.1:0 2>"$work/serve.log" &
serve=$!
for _ in $(seq 100); do grep -q "metrics at" "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
address=$(grep -o 'metrics at http://[^ ]*' "$work/serve.log" | sed 's/metrics at //')
[ -n "$address" ] || { cat "$work/serve.log"; exit 1; }

for i in $(seq "$tasks"); do
  "$drover" launch --state-dir "$state" --config "$work/config.jsonc" --agent explore --prompt "@hang" >/dev/null
done
for _ in $(seq 600); do
  running=$("$drover" stats --json --state-dir "$state" --config "$work/config.jsonc" | python3 -c 'import json,sys; print(json.load(sys.stdin)["running"])')
  [ "$running" -ge "$tasks" ] && break
  sleep 0.2
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r)"
echo "running tasks: $running"

curl -sf "$address" -o "$work/metrics.txt"
promtool check metrics < "$work/metrics.txt" >/dev/null
echo "scrape size: $(wc -c < "$work/metrics.txt") bytes, $(grep -vc '^#' "$work/metrics.txt") samples"
for _ in $(seq 50); do curl -sf -o /dev/null -w '%{time_total}\n' "$address"; done > "$work/http.times"
for _ in $(seq 20); do
  start=$(date +%s%N)
  "$drover" metrics --state-dir "$state" --config "$work/config.jsonc" >/dev/null
  echo $(( ($(date +%s%N) - start) )) | awk '{ printf "%.6f\n", $1 / 1e9 }'
done > "$work/cli.times"
python3 - "$work/http.times" "$work/cli.times" <<'PY'
import statistics, sys
for label, path in [("GET /metrics (curl, 50 scrapes)", sys.argv[1]), ("drover metrics (20 runs)", sys.argv[2])]:
    times = [float(line) * 1000 for line in open(path) if line.strip()]
    print("%s: median %.2f ms, slowest %.2f ms" % (label, statistics.median(times), max(times)))
PY

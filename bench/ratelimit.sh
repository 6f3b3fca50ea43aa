#!/usr/bin/env bash
# Rate limits, measured (issue 11): 100 tasks through drover_model_api.py under `drover run`
# against bench/fake_provider.py, which admits 4 requests at once (429 with retry-after: 1
# beyond) and streams each admitted one for 1 s; the ideal wall time is 100 x 1 s / 4 = 25 s.
# Three setups side by side, each run against a fresh provider:
#   adaptive   providerConcurrency 16, adaptive concurrency and drover's retries (the defaults)
#   static     providerConcurrency 16, adaptiveConcurrency false, retries 0: a static supervisor
#   tuned      providerConcurrency 4: the limit guessed right
# Usage: bash bench/ratelimit.sh [tasks]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-100}
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d /tmp/drover-ratelimit-XXXXXX)
provider_pid=""
cleanup() { [ -n "$provider_pid" ] && kill "$provider_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for i in $(seq "$tasks"); do echo "{\"agent\": \"api\", \"prompt\": \"question $i\"}"; done > "$work/tasks.jsonl"
ideal=$(awk -v n="$tasks" 'BEGIN { printf "%.1f", n * 1.0 / 4 }')
echo "machine: $(nproc) cores, Linux $(uname -r); $tasks tasks, provider capacity 4, 1 s each: ideal wall time ${ideal} s"
printf "%-9s %10s %6s %6s %8s %12s %10s %9s\n" setup completed error 429s "429/task" "wall" "wall/ideal" "/tuned"

run_setup() {  # name, background_task JSON members
  local name=$1 settings=$2
  python3 bench/fake_provider.py --capacity 4 --seconds 1 --lifetime 900 > "$work/port-$name" &
  provider_pid=$!
  for _ in $(seq 100); do [ -s "$work/port-$name" ] && break; sleep 0.05; done
  local port; port=$(head -n1 "$work/port-$name")
  cat > "$work/config-$name.jsonc" <<JSON
{
  "background_task": { $settings },
  "agents": {
    "api": { "command": ["$PWD/workers/python/drover_model_api.py", "--api", "openai",
                         "--base-url", "http://127.0.0.1:$port/v1", "--no-api-key"],
             "provider": "fake", "model": "m" }
  }
}
JSON
  local start end
  start=$(date +%s%N)
  "$bin/drover" run "$work/tasks.jsonl" --results "$work/results-$name" --config "$work/config-$name.jsonc" >/dev/null 2>&1 || true
  end=$(date +%s%N)
  local stats; stats=$(curl -s "http://127.0.0.1:$port/stats" || python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$port/stats').read().decode())")
  kill "$provider_pid" 2>/dev/null; wait "$provider_pid" 2>/dev/null || true; provider_pid=""
  python3 - "$name" "$work/results-$name" "$stats" "$start" "$end" "$ideal" "$tasks" <<'PY'
import json, sys
name, folder, stats, start, end, ideal, tasks = sys.argv[1:]
summary = json.load(open(folder + "/summary.json"))
counts = summary["counts"]
refused = json.loads(stats)["refused"]
wall = (int(end) - int(start)) / 1e9
open(folder + "/../wall-" + name, "w").write(str(wall))
print("%-9s %10d %6d %6d %8.2f %10.1f s %10.2f" % (name, counts["completed"], counts["error"], refused, refused / int(tasks), wall, wall / float(ideal)), end="")
PY
  if [ -f "$work/wall-tuned" ]; then awk -v w="$(cat "$work/wall-$name")" -v t="$(cat "$work/wall-tuned")" 'BEGIN { printf " %9.2f\n", w / t }'; else echo; fi
}

run_setup tuned '"providerConcurrency": { "fake": 4 }'
run_setup adaptive '"providerConcurrency": { "fake": 16 }'
run_setup static '"providerConcurrency": { "fake": 16 }, "adaptiveConcurrency": false, "retries": 0'

echo
echo "adaptive: the effective limit over time (from the pool lines of events.jsonl)"
python3 - "$work/results-adaptive/events.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
start = min(l["t"] for l in lines)
tasks = [l for l in lines if "task_id" in l]
for l in lines:
    if "pool" in l:
        t = (l["t"] - start) / 1000
        running = 0
        print("  +%5.1fs  %-13s effective limit %s%s" % (t, l["status"], l.get("effective_limit"), "  until " + l["until"][11:23] if "until" in l else ""))
PY

#!/usr/bin/env bash
# Budgets, measured (issue 12), release build:
#  1. overshoot: a batch of 20 tasks each costing $0.30, 8 at once, under --max-cost 2.00,
#     RUNS times with the agent's estimateCostUsd 0.30 and RUNS times without one;
#  2. admission cost: launch -> end of 300 trivial tasks on a daemon with 10 budgets and
#     10,000 lines of usage.jsonl, against the same daemon without budgets (ratio of medians).
# Usage: bash bench/budget.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d /tmp/drover-budget-XXXXXX)
cleanup() {
  for s in "$work"/state-*; do [ -d "$s" ] && "$bin/drover" shutdown --state-dir "$s" --no-autostart >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 20); do echo '{"agent": "paid", "prompt": "@usage 1000 1000 0.30\n@sleep 100ms\n@result ok"}'; done > "$work/batch.jsonl"
for estimate in 0.30 none; do
  member=$([ "$estimate" = none ] && echo "" || echo ", \"estimateCostUsd\": $estimate")
  cat > "$work/c-$estimate.jsonc" <<JSON
{ "background_task": { "providerConcurrency": { "mock": 8 } },
  "agents": { "paid": { "command": ["drover-mock-agent"], "provider": "mock" $member } } }
JSON
  spent=()
  for run in $(seq "$runs"); do
    "$bin/drover" run "$work/batch.jsonl" --results "$work/r-$estimate-$run" --config "$work/c-$estimate.jsonc" --max-cost 2.00 >/dev/null 2>&1 || true
    spent+=("$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['usage']['cost_usd'])" "$work/r-$estimate-$run/summary.json")")
    rm -rf "$work/r-$estimate-$run"
  done
  python3 - "$estimate" "${spent[@]}" <<'PY'
import sys
estimate, spent = sys.argv[1], [float(x) for x in sys.argv[2:]]
over = [max(0.0, s - 2.0) for s in spent]
print("overshoot, estimate %-4s: %d runs, spent $%.2f-$%.2f; overshoot max $%.2f (%.0f%% of the budget), mean $%.2f"
      % (estimate, len(spent), min(spent), max(spent), max(over), max(over) / 2.0 * 100, sum(over) / len(over)))
PY
done

# 2. admission with 10 budgets and a long ledger.
python3 - "$work" <<'PY'
import json, sys, time, random
work = sys.argv[1]
lines = []
now = int(time.time() * 1000)
for i in range(10_000):
    lines.append(json.dumps({"t": now - random.randint(0, 3_000_000), "task_id": "bg_%08x" % i, "attempt": 1, "agent": random.choice(["explore", "librarian", "oracle"]),
                             "provider": "mock", "model": None, "input_tokens": 100, "output_tokens": 100, "cache_read_tokens": 0,
                             "cache_write_tokens": 0, "cost_usd": 0.0001}))
lines.sort(key=lambda l: json.loads(l)["t"])
open(work + "/usage.jsonl", "w").write("\n".join(lines) + "\n")
budgets = [{"name": "b%d" % i, "scope": scope, "costUsd": 1000, "tokens": 100_000_000, "window": window}
           for i, (scope, window) in enumerate([("all", "1d"), ("all", "total"), ("provider:mock", "1h"), ("provider:other", "1d"),
                                                ("agent:explore", "1h"), ("agent:librarian", "1d"), ("agent:oracle", "total"),
                                                ("model:mock/x", "1d"), ("agent:explore", "5m"), ("all", "30m")])]
open(work + "/with.jsonc", "w").write(json.dumps({"background_task": {"budgets": budgets}}))
open(work + "/without.jsonc", "w").write(json.dumps({"background_task": {}}))
PY
for setup in without with; do
  state="$work/state-$setup"
  mkdir -m 700 -p "$state"
  [ "$setup" = with ] && cp "$work/usage.jsonl" "$state/usage.jsonl"
  "$bin/drover" status --state-dir "$state" --config "$work/$setup.jsonc" >/dev/null
  printf "admission, %-7s budgets: " "$setup"
  timeout 600 python3 bench/launch_latency.py "$state" 300 | tee "$work/latency-$setup"
  "$bin/drover" shutdown --state-dir "$state" --no-autostart >/dev/null 2>&1 || true
done

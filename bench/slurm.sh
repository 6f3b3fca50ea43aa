#!/usr/bin/env bash
# Slurm, measured (issue 15), release build, on the one-node cluster of scripts/slurm-cluster.sh
# (Licenses=mock:2):
#  1. overhead: 20 tasks (a mock agent answering at once) one after another, through srun and
#     locally, with drover run; the ratio of median task times (started -> ended, and
#     created -> ended, which includes Slurm's scheduling delay);
#  2. the license limit under load: 4 supervisors (drover run, own results folders) with 25
#     tasks each (@sleep 200ms), 8 slots each in drover: the most jobs running at once across
#     all four (from the recorded start and end times), against the 2 licenses.
# Usage: bash bench/slurm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d /tmp/drover-slurm-XXXXXX)
trap 'rm -rf "$work"' EXIT
scontrol show licenses --oneliner | grep -q LicenseName=mock || { echo "no cluster: bash scripts/slurm-cluster.sh start" >&2; exit 1; }

cat > "$work/local.jsonc" <<'JSON'
{ "background_task": { "defaultConcurrency": 1 } }
JSON
cat > "$work/slurm.jsonc" <<'JSON'
{ "background_task": { "defaultConcurrency": 1, "launcher": { "type": "slurm" } } }
JSON
for _ in $(seq 20); do echo '{"agent": "explore", "prompt": "@result ok"}'; done > "$work/quick.jsonl"
walls=()
for where in local slurm; do
  t0=$(date +%s.%N)
  "$bin/drover" run "$work/quick.jsonl" --results "$work/r-$where" --config "$work/$where.jsonc" >/dev/null
  walls+=("$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)")")
done
python3 - "$work" "${walls[@]}" <<'PY'
import json, os, sys, statistics, datetime
def ms(t): return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000
def run_ms(folder):
    return statistics.median(ms(t["ended_at"]) - ms(t["started_at"])
                             for t in (json.load(open(f"{folder}/tasks/{i}/task.json")) for i in os.listdir(folder + "/tasks")))
work, local_s, slurm_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
lr, sr = run_ms(work + "/r-local"), run_ms(work + "/r-slurm")
print(f"overhead, 20 tasks one at a time: {local_s * 50:.0f} ms a task locally, {slurm_s * 50:.0f} ms through Slurm "
      f"({slurm_s / local_s:.1f}x, +{(slurm_s - local_s) * 50:.0f} ms a task: srun, the allocation and the scheduler); "
      f"median running time (job running -> ended) {lr:.0f} ms / {sr:.0f} ms")
PY

cat > "$work/load.jsonc" <<'JSON'
{ "background_task": { "defaultConcurrency": 8, "launcher": { "type": "slurm" } } }
JSON
for _ in $(seq 25); do echo '{"agent": "explore", "prompt": "@sleep 200ms\n@result ok"}'; done > "$work/load.jsonl"
start=$(date +%s.%N)
for n in 1 2 3 4; do
  "$bin/drover" run "$work/load.jsonl" --results "$work/load-$n" --config "$work/load.jsonc" >/dev/null &
done
wait
end=$(date +%s.%N)
python3 - "$work" "$start" "$end" <<'PY'
import json, os, sys, datetime
def ms(t): return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000
work, spans, completed = sys.argv[1], [], 0
for n in range(1, 5):
    folder = f"{work}/load-{n}/tasks"
    for id in os.listdir(folder):
        t = json.load(open(f"{folder}/{id}/task.json"))
        completed += t["status"] == "completed"
        spans.append((ms(t["started_at"]), ms(t["ended_at"])))
most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
print(f"license limit: {completed}/{len(spans)} completed from 4 supervisors in {float(sys.argv[3]) - float(sys.argv[2]):.1f} s; "
      f"at most {most} running at once (licenses: 2)")
PY

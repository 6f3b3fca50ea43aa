#!/usr/bin/env bash
# Sandboxes, measured (issue 16), release build: start-up cost of a sandboxed task against an
# unsandboxed one: 1,000 /bin/true through `drover run`, 64 at once, each way RUNS times
# (alternating), ratio of the median wall times.
# Usage: bash bench/sandbox.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d /tmp/drover-sandbox-XXXXXX)
trap 'rm -rf "$work"' EXIT
echo '{ "background_task": { "providerConcurrency": { "local": 64 } } }' > "$work/config.jsonc"
for _ in $(seq 1000); do echo '{"command": ["/bin/true"]}'; done > "$work/plain.jsonl"
for _ in $(seq 1000); do echo '{"command": ["/bin/true"], "sandbox": {}}'; done > "$work/boxed.jsonl"
plain=() boxed=()
for run in $(seq "$runs"); do
  for kind in plain boxed; do
    t0=$(date +%s.%N)
    "$bin/drover" run "$work/$kind.jsonl" --results "$work/r-$kind-$run" --config "$work/config.jsonc" >/dev/null
    t=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)")
    if [ "$kind" = plain ]; then plain+=("$t"); else boxed+=("$t"); fi
    rm -rf "$work/r-$kind-$run"
  done
done
python3 - "${plain[*]}" "${boxed[*]}" <<'PY'
import sys, statistics
plain = [float(x) for x in sys.argv[1].split()]; boxed = [float(x) for x in sys.argv[2].split()]
p, b = statistics.median(plain), statistics.median(boxed)
print(f"1,000 /bin/true, 64 at once: {p:.2f} s unsandboxed, {b:.2f} s sandboxed (median of {len(plain)}); "
      f"ratio {b/p:.2f}; {(b-p)*1000/1000:.2f} ms more a task ({p*1000/1000:.2f} vs {b*1000/1000:.2f} ms of wall time a task)")
PY

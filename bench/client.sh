#!/usr/bin/env bash
# Client start-up figures for BENCHMARKS.md, rerunnable: bash bench/client.sh [RUNS]
# Medians (hyperfine, no shell in between) of one client call each, beside a minimal static
# Swift program and task-spooler's client:
#  - print("hi") built with -static-stdlib (the floor: exec, the loader, Swift's runtime);
#  - drover --version, drover status, drover launch (mock agent) against a running daemon;
#  - drover status against a daemon that knows 10,000 tasks;
#  - drover launch with the state folder on tmpfs (no fsync cost), and the daemon's own share
#    of status and launch, from a client in Python (bench/daemon_latency.py);
#  - tsp (list) and tsp true (enqueue), against a running task-spooler server.
# Built as scripts/install.sh builds (static standard library, position-dependent).
# Needs hyperfine and task-spooler (Debian: apt-get install hyperfine task-spooler).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
command -v hyperfine >/dev/null || { echo "bench/client.sh: needs hyperfine (apt-get install hyperfine)" >&2; exit 2; }
tsp=$(command -v tsp || command -v ts || true)
[ -n "$tsp" ] || { echo "bench/client.sh: needs task-spooler's tsp (apt-get install task-spooler)" >&2; exit 2; }

swift build -c release --static-swift-stdlib -Xlinker -no-pie --product drover >/dev/null
swift build -c release --static-swift-stdlib -Xlinker -no-pie --product drover-mock-agent >/dev/null
swift build -c release --static-swift-stdlib -Xlinker -no-pie --product drover-warden >/dev/null
swift build -c release --static-swift-stdlib -Xlinker -no-pie --product drover-limits >/dev/null
bin=$(swift build -c release --show-bin-path)
drover="$bin/drover"
work=$(mktemp -d /tmp/drover-client-bench-XXXXXX)
# The same launch with the state folder on tmpfs: the difference is the daemon's fdatasync of
# the task's files before it acknowledges (durability, kept).
shm=$(mktemp -d /dev/shm/drover-client-bench-XXXXXX)
export TS_SOCKET="$work/tsp.socket" TS_SAVELIST_DIR="$work" TMPDIR="$work"
cleanup() {
  for s in "$work"/small "$work"/known "$shm"/small; do "$drover" shutdown --state-dir "$s" --no-autostart >/dev/null 2>&1 || true; done
  "$tsp" -K >/dev/null 2>&1 || true
  rm -rf "$work" "$shm"
}
trap cleanup EXIT

printf 'print("hi")\n' > "$work/hi.swift"
swiftc -O -static-stdlib "$work/hi.swift" -o "$work/hi" 2>/dev/null

# Launched tasks wait behind one that holds the only slot: the figure is the launch path,
# not mock agents competing for the cores.
cat > "$work/config.jsonc" <<'JSON'
{ "background_task": { "providerConcurrency": { "mock": 1 } } }
JSON
"$drover" launch --state-dir "$work/small" --config "$work/config.jsonc" --agent explore --prompt "@hang" >/dev/null
"$drover" launch --state-dir "$shm/small" --config "$work/config.jsonc" --agent explore --prompt "@hang" >/dev/null
python3 bench/make_tasks.py "$work/known" 10000
"$drover" status --state-dir "$work/known" --config "$work/config.jsonc" >/dev/null
"$tsp" true >/dev/null   # starts the task-spooler server

hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/times.json" \
  -n 'print("hi"), static stdlib' "$work/hi" \
  -n 'drover --version' "$drover --version" \
  -n 'drover status' "$drover status --state-dir $work/small" \
  -n 'drover launch (mock agent)' "$drover launch --state-dir $work/small --agent explore --prompt bench" \
  -n 'drover launch, state folder on tmpfs' "$drover launch --state-dir $shm/small --agent explore --prompt bench" \
  -n 'drover status, 10,000 tasks known' "$drover status --state-dir $work/known" \
  -n 'drover status --limit 20, 10,000 tasks known' "$drover status --state-dir $work/known --limit 20" \
  -n 'tsp (list)' "$tsp" \
  -n 'tsp true (enqueue)' "$tsp true" >/dev/null

python3 bench/daemon_latency.py "$work/small" 100 | sed 's/^/state folder on disk: /'
python3 bench/daemon_latency.py "$shm/small" 100 | sed 's/^/state folder on tmpfs: /'
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r)"
echo "drover's libraries: $(ldd "$drover" | awk '{print $1}' | grep -v -e linux-vdso -e ld-linux | tr '\n' ' ')"
python3 - "$work/times.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
floor = results[0]["median"]
print("| command | median | × print(\"hi\") |")
print("|---|---|---|")
for r in results:
    print(f"| {r['command']} | {r['median'] * 1000:.2f} ms | {r['median'] / floor:.2f} |")
PY

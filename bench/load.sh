#!/usr/bin/env bash
# Load through the daemon: 10,000 tasks queued, 500 running at once (mock workers that keep
# sending heartbeats). Checks that no task is lost and no descriptor leaks, and prints the
# daemon's memory per running task. Rerunnable: bash bench/load.sh [tasks] [running]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-10000}
running=${2:-500}
swift build -c release >/dev/null
drover="$(swift build -c release --show-bin-path)/drover"
state=$(mktemp -d /tmp/drover-load-XXXXXX)
trap '"$drover" shutdown --state-dir "$state" --no-autostart >/dev/null 2>&1 || true; rm -rf "$state" "$state.jsonc" "$state.peak"' EXIT
cat > "$state.jsonc" <<JSON
{ "background_task": { "providerConcurrency": { "mock": $running } } }
JSON
"$drover" status --state-dir "$state" --config "$state.jsonc" >/dev/null
pid=$(head -1 "$state/daemon.lock")
fds() { ls "/proc/$pid/fd" | wc -l; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
fds_before=$(fds); rss_before=$(rss)
# Sample the daemon's peak memory, descriptors and running tasks for the whole run.
( peak_rss=0; peak_fds=0
  while kill -0 "$pid" 2>/dev/null; do
    r=$(rss 2>/dev/null); f=$(fds 2>/dev/null); r=${r:-0}; f=${f:-0}
    [ "$r" -gt "$peak_rss" ] && peak_rss=$r; [ "$f" -gt "$peak_fds" ] && peak_fds=$f
    echo "$peak_rss $peak_fds" > "$state.peak"; sleep 0.1
  done ) &

# Launch through the protocol from one client, as fast as the daemon acknowledges.
python3 - "$state" "$tasks" <<'PY'
import json, os, socket, struct, sys
state, count = sys.argv[1], int(sys.argv[2])
def call(frame):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(os.path.join(state, "drover.sock"))
    data = json.dumps(frame).encode(); s.sendall(struct.pack(">I", len(data)) + data)
    header = s.recv(4, socket.MSG_WAITALL); (n,) = struct.unpack(">I", header)
    answer = json.loads(s.recv(n, socket.MSG_WAITALL)); s.close(); return answer
for i in range(count):
    answer = call({"type": "launch", "agent": "explore", "prompt": "@busy 3s\n@result %d" % i})
    assert answer["type"] == "ok", answer
PY
"$drover" wait --all --state-dir "$state" >/dev/null
completed=$(ls "$state"/tasks/*/result.md | wc -l)
sleep 1
read -r rss_peak fds_peak < "$state.peak"
echo "load: $tasks tasks, at most $running at once (mock workers sending heartbeats for 3 s each)"
echo "  completed with a result: $completed of $tasks"
echo "  daemon RSS: $((rss_before / 1024)) MiB idle, peak $((rss_peak / 1024)) MiB: $(( (rss_peak - rss_before) / running )) KiB per running task (the queue's tasks included)"
echo "  daemon descriptors: $fds_before before, peak $fds_peak, $(fds) after"

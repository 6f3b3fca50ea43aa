#!/usr/bin/env bash
# Housekeeping figures for BENCHMARKS.md, rerunnable: bash bench/housekeeping.sh [DROVER...]
# A state folder with 100,000 ended tasks (task.json, result.md and their journal lines,
# written directly in the daemon's format, ended over the last 100 days); a daemon started
# on it; its RSS (VmRSS, and its peak VmHWM) and the time of `drover status --json` and
# `status --limit 20`; then `drover clean --older-than 10d` (about 88,000 go), with a launch
# issued once the first folders are gone (how long its answer took), the same figures again, and once more
# after a restart on what is left. Each DROVER binary given (default: this checkout's release
# build) is measured in turn; one without `clean` gets the first figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-100000}
if [ $# -eq 0 ]; then
  swift build -c release >/dev/null
  set -- "$(swift build -c release --show-bin-path)/drover"
fi
work=$(mktemp -d /tmp/drover-housekeeping-bench-XXXXXX)
state="$work/state"
cleanup() { for d in "$@"; do "$d" shutdown --state-dir "$state" --no-autostart >/dev/null 2>&1 || true; done; rm -rf "$work"; }
trap 'cleanup "$@"' EXIT
echo '{}' > "$work/config.json"

make_folder() {
  rm -rf "$state"
  python3 - "$state" "$count" <<'PY'
import json, os, random, sys, time
state, count = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(state, "tasks"), mode=0o700)
os.chmod(state, 0o700)
os.makedirs(os.path.join(state, "sessions"), mode=0o700)
now = int(time.time() * 1000)
def stamp(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)
seen = set()
rng = random.Random(17)
with open(os.path.join(state, "events.jsonl"), "w") as journal:
    for i in range(count):
        while True:
            task_id = "bg_%08x" % rng.getrandbits(32)
            if task_id not in seen: break
        seen.add(task_id)
        session = "ses_%08x" % rng.getrandbits(32)
        ended = now - (count - i) * (100 * 86400 * 1000 // count)
        created, started = ended - 1200, ended - 1000
        status = "completed" if i % 10 else "error"
        folder = os.path.join(state, "tasks", task_id)
        os.mkdir(folder, 0o700)
        agent = ("explore", "librarian", "oracle")[i % 3]
        task = {"id": task_id, "session_id": session, "agent": agent, "provider": "mock", "model": None, "key": agent,
                "description": f"earlier task {i}", "prompt": f"earlier task {i}: look at the code and say what matters",
                "status": status, "waiting_for": None, "attempt": 1, "reason": "result" if status == "completed" else "exit",
                "error": None if status == "completed" else "the worker exited 1", "created_at": stamp(created),
                "started_at": stamp(started), "ended_at": stamp(ended), "duration_ms": 1000, "pid": 1000 + i, "exit_code": 0,
                "signal": None, "progress": {"messages": 2, "tool_calls": 2, "last_tool": "read", "last_message": "done", "last_update": stamp(ended)},
                "attempts": [{"n": 1, "provider": "mock", "model": None, "started_at": stamp(started), "ended_at": stamp(ended), "status": status,
                              "reason": "result", "error": None, "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd": 0}}],
                "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd": 0},
                "result_path": os.path.join(folder, "result.md") if status == "completed" else None, "ttl_ms": 1800000,
                "pool": "key:" + agent, "slot": 0, "request": {"agent": agent, "provider": "mock", "cwd": "/tmp"}}
        with open(os.path.join(folder, "task.json"), "w") as f: json.dump(task, f)
        if status == "completed":
            with open(os.path.join(folder, "result.md"), "w") as f: f.write(f"done {i}\n")
        for t, s, extra in ((created, "pending", ""), (started, "running", ',"attempt":1'), (ended, status, "")):
            reason = "null" if s in ("pending", "running") else '"%s"' % task["reason"]
            journal.write('{"t":%d,"task_id":"%s","session_id":"%s","status":"%s","reason":%s%s}\n' % (t, task_id, session, s, reason, extra))
PY
}

ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() {  # command... -> median ms of 5 runs
  for _ in 1 2 3 4 5; do local s e; s=$(ms); "$@" >/dev/null; e=$(ms); echo $((e - s)); done | median
}
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024} /VmHWM/ {hwm = $2} END {printf " (peak %.1f MiB)", hwm / 1024}' "/proc/$1/status"; }

figures() {  # label drover pid
  local label=$1 d=$2 pid=$3
  local all limit
  all=$(timed "$d" status --json --state-dir "$state" --config "$work/config.json" --no-autostart)
  limit=$("$d" status --help | grep -q -- --limit && timed "$d" status --limit 20 --state-dir "$state" --config "$work/config.json" --no-autostart || echo "n/a ")
  echo "  $label: tasks $(ls "$state/tasks" | wc -l), RSS $(rss "$pid"), status --json ${all} ms, status --limit 20 ${limit} ms"
}

start() {  # drover -> pid, once it answers
  local d=$1 s e
  s=$(ms)
  "$d" serve --state-dir "$state" --config "$work/config.json" >/dev/null 2>&1 &
  local pid=$!
  until "$d" stats --state-dir "$state" --config "$work/config.json" --no-autostart >/dev/null 2>&1; do sleep 0.05; done
  e=$(ms)
  echo "$pid $((e - s))"
}

for d in "$@"; do
  echo "== $d"
  make_folder
  sync
  read -r pid startup < <(start "$d")
  echo "  start-up with $count ended tasks: ${startup} ms"
  figures "before clean" "$d" "$pid"
  if "$d" clean --help >/dev/null 2>&1; then
    # A launch while the clean runs: how long its acknowledgement waits for the writer.
    s=$(ms); "$d" clean --older-than 10d --state-dir "$state" --config "$work/config.json" --no-autostart >/dev/null &
    cleaning=$!
    until [ "$(find "$state/tasks" -mindepth 1 -maxdepth 1 2>/dev/null | head -n "$count" | wc -l)" -lt "$count" ]; do sleep 0.05; done
    l=$(ms); "$d" launch --agent explore --prompt "@result launched during the clean" --state-dir "$state" --config "$work/config.json" --no-autostart >/dev/null
    le=$(ms)
    wait "$cleaning"; e=$(ms)
    echo "  drover clean --older-than 10d: $((e - s)) ms; a launch during it answered in $((le - l)) ms"
    figures "after clean" "$d" "$pid"
    "$d" shutdown --state-dir "$state" --no-autostart >/dev/null
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    read -r pid startup < <(start "$d")
    echo "  restart on what is left: ${startup} ms"
    figures "after restart" "$d" "$pid"
  fi
  "$d" shutdown --state-dir "$state" --no-autostart >/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
done

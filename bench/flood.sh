#!/usr/bin/env bash
# The daemon under floods of output (SPEC 16.5), release build:
#  (a) its peak memory while three mock tasks flood about 1 GB each
#      (`@flood 16000 65536`), sampled every 100 ms (VmRSS and the kernel's VmHWM);
#  (b) completion latency of trivial tasks (`@result q`) launched one after another, launch ->
#      end on `events --follow` (bench/launch_latency.py), beside one such flood and without.
# With --base WORKTREE (a worktree of an older commit, e.g.
# `git worktree add ../wt-base 73a4aa2`), that tree is built in release too and measured the
# same way, for comparison.
# Rerunnable: bash bench/flood.sh [--base WORKTREE] [--tasks N (200)] [--floods N (4)] [--settle S (30)]
# Every flood writes about 2 GB (transcript and session file): the folders are deleted after
# each measurement, and the script stops first if the disk has too little room. After each
# delete it waits --settle seconds: on this `discard`-mounted disk, syncs right after
# deleting gigabytes stall for hundreds of ms (BENCHMARKS.md), which would be measured as
# latency.
set -euo pipefail
cd "$(dirname "$0")/.."
base=""; tasks=200; floods=4; settle=30
while [ $# -gt 0 ]; do
  case $1 in
    --base) base=$2; shift 2 ;;
    --tasks) tasks=$2; shift 2 ;;
    --floods) floods=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    *) echo "usage: bash bench/flood.sh [--base WORKTREE] [--tasks N] [--floods N] [--settle S]" >&2; exit 2 ;;
  esac
done
swift build -c release >/dev/null
current="$(swift build -c release --show-bin-path)/drover"
if [ -n "$base" ]; then
  (cd "$base" && swift build -c release >/dev/null)
  previous="$(cd "$base" && swift build -c release --show-bin-path)/drover"
  base_commit=$(git -C "$base" log -1 --format=%h)
fi
work=$(mktemp -d /tmp/drover-flood-XXXXXX)
daemons=()
sampler=""
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
  for state in "${daemons[@]+"${daemons[@]}"}"; do
    pid=$(head -1 "$state/daemon.lock" 2>/dev/null || true)
    timeout 30 "$current" shutdown --state-dir "$state" --no-autostart >/dev/null 2>&1 || true
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/config.jsonc" <<'JSON'
{ "background_task": { "providerConcurrency": { "mock": 8 }, "minIdleTime": 0 } }
JSON

# Room for `needed_gb` more, or stop.
room() {
  local needed_gb=$1 free_gb
  free_gb=$(df --output=avail -BG "$work" | tail -1 | tr -dc 0-9)
  if [ "$free_gb" -lt "$needed_gb" ]; then
    echo "only ${free_gb} GB free under $work, and this step writes up to ${needed_gb} GB: stopping" >&2
    exit 3
  fi
}

# A daemon of `drover` on a new state folder, `$work/NAME`, which it sets as $state.
new_daemon() {
  local drover=$1 name=$2
  state="$work/$name"
  daemons+=("$state")
  "$drover" status --state-dir "$state" --config "$work/config.jsonc" >/dev/null
}

stop_daemon() {
  local drover=$1 state=$2 pid
  pid=$(head -1 "$state/daemon.lock" 2>/dev/null || true)
  timeout 60 "$drover" shutdown --state-dir "$state" --no-autostart >/dev/null 2>&1 || true
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$state"
  sync
  sleep "$settle"
}

peak_memory() {  # drover label
  local drover=$1 label=$2 pid started ended
  room 8
  new_daemon "$drover" memory
  pid=$(head -1 "$state/daemon.lock")
  # VmRSS every 100 ms; VmHWM is the kernel's own peak, read last.
  ( peak=0
    while kill -0 "$pid" 2>/dev/null; do
      rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "${rss:-0}" -gt "$peak" ] && peak=$rss && echo "$peak" > "$work/peak-rss"
      awk '/^VmHWM/ {print $2}' "/proc/$pid/status" > "$work/hwm.tmp" 2>/dev/null && mv "$work/hwm.tmp" "$work/hwm"
      sleep 0.1
    done ) &
  sampler=$!
  started=$(date +%s%N)
  ids=()
  for _ in 1 2 3; do
    ids+=("$("$drover" launch --state-dir "$state" --agent explore --prompt $'@flood 16000 65536\n@result done')")
  done
  timeout 900 "$drover" wait --state-dir "$state" --timeout 14m "${ids[@]}" >/dev/null || echo "  (the floods did not all complete: $(timeout 30 "$drover" status --state-dir "$state" | tail -3))"
  ended=$(date +%s%N)
  sleep 0.3
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; sampler=""
  local bytes
  bytes=$(du -sb "$state" | cut -f1)
  printf "  %-28s peak RSS (VmHWM) %6d MiB, highest VmRSS sampled %6d MiB; 3 floods in %.1f s, %.1f GB written\n" \
    "$label" $(( $(cat "$work/hwm") / 1024 )) $(( $(cat "$work/peak-rss") / 1024 )) \
    "$(awk -v ns=$((ended - started)) 'BEGIN { print ns / 1e9 }')" "$(awk -v b="$bytes" 'BEGIN { print b / 1e9 }')"
  stop_daemon "$drover" "$state"
  rm -f "$work/peak-rss" "$work/hwm"
}

latency() {  # drover label
  local drover=$1 label=$2
  room $((2 * floods + 2))
  echo "  $label:"
  new_daemon "$drover" quiet
  printf "    "; timeout 600 python3 bench/launch_latency.py "$state" "$tasks"
  stop_daemon "$drover" "$state"
  new_daemon "$drover" flooded
  printf "    "; timeout 900 python3 bench/launch_latency.py "$state" "$tasks" --flood "$floods" \
    || echo "(no figure: the client failed or ran out of time)"
  stop_daemon "$drover" "$state"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r); $(df -h --output=avail "$work" | tail -1 | tr -d ' ') free under $work"
echo "(a) daemon memory, three tasks flooding 16,000 x 64 KiB messages each (about 1 GB):"
peak_memory "$current" "this build ($(git log -1 --format=%h))"
[ -n "$base" ] && peak_memory "$previous" "previous build ($base_commit)"
echo "(b) completion latency of trivial tasks:"
latency "$current" "this build ($(git log -1 --format=%h))"
[ -n "$base" ] && latency "$previous" "previous build ($base_commit)"
exit 0

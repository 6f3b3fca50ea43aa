#!/usr/bin/env bash
# Crash figures (SPEC 16.1-16.3): the daemon SIGKILLed at random moments while raw tasks are
# launched and end, then `drover run` SIGKILLed and resumed, each task writing its id to a
# side log; prints tasks, kills, acknowledged launches, duplicates, double ends, lost
# acknowledged launches and tasks ended lost (bench/crash.py does the work).
# Rerunnable: bash bench/crash.sh [daemon_tasks daemon_kills batch_rows batch_kills [seed]]
# (defaults 1000 30 1000 10, a random seed; each scenario stops after 15 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
daemon_tasks=${1:-1000}; daemon_kills=${2:-30}; batch_rows=${3:-1000}; batch_kills=${4:-10}
seed=${5:-$RANDOM$RANDOM}
swift build -c release >/dev/null
drover="$(swift build -c release --show-bin-path)/drover"
work=$(mktemp -d /tmp/drover-crash-XXXXXX)
cleanup() {
  "$drover" shutdown --no-autostart --state-dir "$work/state" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r); seed $seed"
timeout -k 10 960 python3 bench/crash.py "$drover" "$work" daemon "$daemon_tasks" "$daemon_kills" "$seed"
timeout -k 10 960 python3 bench/crash.py "$drover" "$work" batch "$batch_rows" "$batch_kills" "$seed"

#!/usr/bin/env bash
# Records what the real Claude Code CLI prints (stream-json) for one scripted exchange with the
# tests' fake Anthropic API, as a replay fixture of the adapter's tests. Run it again when the
# pinned CLI version changes, and compare.
#
#   scripts/record-claude-stream.sh NAME SCRIPT.json PROMPT [CLAUDE-ARGS...]
#
# SCRIPT.json: the fake's rules (see Tests/DroverRealAgentTests/Fakes/fake_anthropic.py).
# Writes Tests/DroverAdapterTests/Fixtures/streams/claude/NAME.jsonl. The CLI's own retries:
# CLAUDE_CODE_MAX_RETRIES (default here 1, as drover-adapter sets it). RECORD_AUTH=oauth logs
# the CLI in with a (fake) subscription token instead of an API key: only then does it print
# rate_limit_event lines.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n 4,10p "$0" >&2; exit 2; }
name=$1 script=$2 prompt=$3; shift 3
claude=$(bash scripts/fetch-agent-clis.sh | sed -n 1p)
work=$(mktemp -d)
trap 'kill "$fake" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/home"
python3 Tests/DroverRealAgentTests/Fakes/fake_anthropic.py --script "$script" --log "$work/requests.jsonl" >"$work/port" &
fake=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(head -1 "$work/port")
out=Tests/DroverAdapterTests/Fixtures/streams/claude/$name.jsonl
status=0
credential=ANTHROPIC_API_KEY=sk-fake
[ "${RECORD_AUTH:-}" = oauth ] && credential=CLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-fake
(cd "$work" && env -i PATH="$PATH" LANG=C.UTF-8 HOME="$work/home" IS_SANDBOX=1 \
  ANTHROPIC_BASE_URL="http://127.0.0.1:$port" "$credential" \
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 DISABLE_ERROR_REPORTING=1 \
  CLAUDE_CODE_MAX_RETRIES="${CLAUDE_CODE_MAX_RETRIES:-1}" \
  "$claude" -p "$prompt" --output-format stream-json --verbose --dangerously-skip-permissions "$@") >"$out" || status=$?
echo "record-claude-stream: $out ($(wc -l <"$out") lines, claude exited $status)" >&2

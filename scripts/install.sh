#!/usr/bin/env bash
# Installs drover: bash scripts/install.sh [--systemd-user] [PREFIX]   (PREFIX: /usr/local)
#  - a release build with the Swift standard library linked in (no toolchain needed to run);
#  - drover and its companion programs into PREFIX/bin (drover finds them beside itself);
#  - the Python worker modules into PREFIX/share/drover/python, README.md into
#    PREFIX/share/doc/drover;
#  - with --systemd-user, the daemon's user unit into ~/.config/systemd/user/drover.service,
#    its ExecStart naming PREFIX/bin/drover (then: systemctl --user daemon-reload &&
#    systemctl --user enable --now drover).
set -euo pipefail

systemd_user=false
prefix=/usr/local
for argument in "$@"; do
  case "$argument" in
    --systemd-user) systemd_user=true ;;
    -h|--help) sed -n 2,8p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "install.sh: unknown option $argument (see --help)" >&2; exit 2 ;;
    *) prefix=$argument ;;
  esac
done
case "$prefix" in
  /*) ;;
  *) prefix="$PWD/$prefix" ;;
esac
cd "$(dirname "$0")/.."

# Every program links the Swift standard library statically. drover-mcp (the MCP server)
# also links Foundation statically, whose networking part needs libcurl's development
# files to link (Debian: libcurl4-openssl-dev); it then loads the system's libcurl.so.4.
if [ ! -f /usr/include/curl/curl.h ] && [ ! -f /usr/include/x86_64-linux-gnu/curl/curl.h ]; then
  echo "install.sh: drover-mcp needs libcurl's development files to link: apt-get install libcurl4-openssl-dev" >&2
  exit 2
fi
programs=(drover drover-warden drover-mock-agent drover-limits drover-adapter drover-mcp)
# Position-dependent (-no-pie): the loader then has no relative relocations to apply, about
# 45,000 in drover, a fifth of a client command's start (BENCHMARKS.md). Only beside the static
# standard library: against the shared one the loader warns at every run.
swift build -c release --static-swift-stdlib -Xlinker -no-pie
bin=$(swift build -c release --show-bin-path)

install -d "$prefix/bin" "$prefix/share/drover/python/examples" "$prefix/share/doc/drover"
for program in "${programs[@]}"; do
  install -m 755 "$bin/$program" "$prefix/bin/$program"
done
install -m 755 workers/python/drover_worker.py workers/python/drover_model_api.py "$prefix/share/drover/python/"
install -m 755 workers/python/examples/word_count.py "$prefix/share/drover/python/examples/"
install -m 644 README.md "$prefix/share/doc/drover/README.md"
echo "installed ${programs[*]} into $prefix/bin"
echo "installed the Python worker modules into $prefix/share/drover/python"

if $systemd_user; then
  home_units="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
  install -d "$home_units"
  sed -e "s|^ExecStart=/usr/local/bin/drover |ExecStart=$prefix/bin/drover |" \
      -e "s|^Documentation=file:///usr/local/|Documentation=file://$prefix/|" etc/drover.service > "$home_units/drover.service"
  chmod 644 "$home_units/drover.service"
  echo "installed $home_units/drover.service; start it with: systemctl --user daemon-reload && systemctl --user enable --now drover"
fi

#!/usr/bin/env bash
# Builds the libFuzzer targets with swiftc (-sanitize=fuzzer,address) and runs each for a
# fixed time, growing the corpus under Tests/FuzzCorpus. Usage: bash fuzz/run.sh [seconds]
# A crash stops the run and leaves the input as crash-* in the current folder.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=.build-fuzz
mkdir -p "$build"
flags=(-sanitize=fuzzer,address -parse-as-library -O -g)

# The wire module, then the targets against it.
swiftc "${flags[@]}" -emit-module -emit-library -static -module-name DroverWire \
  -emit-module-path "$build/DroverWire.swiftmodule" -o "$build/libDroverWire.a" Sources/DroverWire/*.swift
swiftc "${flags[@]}" -I "$build" -L "$build" -lDroverWire fuzz/FrameDecoderFuzz.swift -o "$build/fuzz-frames" 2>&1 | grep -v "Cannot export local symbol" || true
swiftc "${flags[@]}" -I "$build" -L "$build" -lDroverWire fuzz/JSONParserFuzz.swift -o "$build/fuzz-json" 2>&1 | grep -v "Cannot export local symbol" || true
# The config reader is plain Swift over the wire module; compile its files into the target.
swiftc "${flags[@]}" -I "$build" -L "$build" -lDroverWire -module-name ConfigFuzz \
  Sources/DroverCore/Config.swift Sources/DroverCore/ConfigLoader.swift Sources/DroverCore/FileSystem.swift \
  Sources/DroverCore/SlotPools.swift Sources/DroverCore/RetryPolicy.swift Sources/DroverCore/FieldReader.swift fuzz/ConfigFuzz.swift -o "$build/fuzz-config" 2>&1 | grep -v "Cannot export local symbol" || true

# Inputs up to 1 MiB: big objects and arrays are where quadratic work hides.
for target in frames json config; do
  echo "== fuzz-$target for ${seconds}s"
  mkdir -p "Tests/FuzzCorpus/$target"
  "$build/fuzz-$target" -max_total_time="$seconds" -max_len=1048576 -print_final_stats=1 \
    "Tests/FuzzCorpus/$target" 2>&1 | grep -E "stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|Done" || true
done

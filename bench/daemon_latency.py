#!/usr/bin/env python3
"""The daemon's own share of a client call: status and launch requests sent by a client in
Python that speaks the control protocol directly (a 4-byte big-endian length, then JSON),
timed from connect() to the answer. No Swift client starts, so what is left is the socket,
the daemon's handling and, for launch, its durable write of the task before it answers.
Usage: daemon_latency.py STATE_DIR [COUNT]   (a daemon must be serving STATE_DIR)
"""
import json, os, socket, statistics, struct, sys, time

state = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 200


def call(frame):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(state, "drover.sock"))
    data = json.dumps(frame).encode()
    s.sendall(struct.pack(">I", len(data)) + data)
    header = b""
    while len(header) < 4:
        chunk = s.recv(4 - len(header))
        if not chunk:
            raise SystemExit("daemon_latency.py: the daemon closed the connection")
        header += chunk
    (length,) = struct.unpack(">I", header)
    payload = b""
    while len(payload) < length:
        payload += s.recv(length - len(payload))
    s.close()
    answer = json.loads(payload)
    if answer.get("type") == "error":
        raise SystemExit(f"daemon_latency.py: {answer}")
    return answer


def median_ms(frame):
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call(frame)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


status = median_ms({"type": "status", "limit": 1})
launch = median_ms({"type": "launch", "agent": "explore", "prompt": "bench"})
print(f"daemon side (Python client, median of {count}): status {status:.2f} ms, launch {launch:.2f} ms")

#!/usr/bin/env python3
"""Completion latency of trivial tasks: a launch request sent -> the task's end on
`events --follow`, for COUNT tasks launched one after another (each once the one before
ended). With --flood, one mock task flooding about 1 GB runs beside them (another starts as
soon as one ends, at most FLOODS in all); only tasks during which one flood ran from their
launch to their end are counted, until COUNT are.

Speaks the control protocol directly: a 4-byte big-endian length, then JSON, both ways.
Usage: launch_latency.py STATE_DIR COUNT [--flood FLOODS]
"""
import json, os, socket, struct, sys, time

state, count = sys.argv[1], int(sys.argv[2])
max_floods = int(sys.argv[4]) if len(sys.argv) > 3 and sys.argv[3] == "--flood" else 0
FLOOD = "@flood 16000 65536\n@result done"
TERMINAL = {"completed", "error", "cancelled"}


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(state, "drover.sock"))
    return s


def send(s, frame):
    data = json.dumps(frame).encode()
    s.sendall(struct.pack(">I", len(data)) + data)


def receive(s):
    header = s.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        raise SystemExit("launch_latency.py: the daemon closed the connection")
    (length,) = struct.unpack(">I", header)
    return json.loads(s.recv(length, socket.MSG_WAITALL))


def launch(prompt):
    s = connect()
    send(s, {"type": "launch", "agent": "explore", "prompt": prompt})
    answer = receive(s)
    s.close()
    if answer.get("type") != "ok":
        raise SystemExit(f"launch_latency.py: launch refused: {answer}")
    return answer["task_id"]


follower = connect()
send(follower, {"type": "events", "follow": True})
assert receive(follower)["type"] == "following"

floods, flood = 0, None
ended = set()


def start_flood():
    global flood, floods
    flood, floods = launch(FLOOD), floods + 1
    # Measure only once it runs: its worker is writing by then.
    while True:
        event = receive(follower)
        if event.get("task_id") == flood and event.get("status") == "running":
            return


if max_floods:
    start_flood()
latencies, launched = [], 0
while len(latencies) < count:
    flood_before = flood
    started = time.monotonic()
    task = launch(f"@result {launched}")
    launched += 1
    while task not in ended:
        event = receive(follower)
        if event.get("status") in TERMINAL:
            ended.add(event["task_id"])
            if event["task_id"] == flood:
                flood = None
    elapsed_ms = (time.monotonic() - started) * 1000
    if not max_floods:
        latencies.append(elapsed_ms)
        continue
    # Beside the flood only when one flood ran from the launch to the end.
    if flood is not None and flood == flood_before:
        latencies.append(elapsed_ms)
    elif flood is None:
        if floods == max_floods:
            break
        start_flood()

latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))]
if not latencies:
    raise SystemExit("launch_latency.py: no task ran beside a flood")
where = f"beside a 1 GB flood ({floods} flood(s) one after another; {launched - len(latencies)} tasks not counted, as a flood ended during them)" if max_floods else "with no flood"
print(f"launch -> end on events --follow, {len(latencies)} trivial tasks one after another, {where}: "
      f"p50 {pick(0.5):.1f} ms, p90 {pick(0.9):.1f} ms, p99 {pick(0.99):.1f} ms, max {latencies[-1]:.1f} ms")

#!/usr/bin/env python3
"""Notification latency: a worker's result frame -> the event line on `events --follow`.

Speaks drover's control protocol directly (a 4-byte big-endian length, then JSON), as any
language can: follows events, launches tasks that answer at once, and for each completion
compares the moment the event arrived with the result frame's time in the transcript.
Usage: events_latency.py STATE_DIR [COUNT]
"""
import json, os, socket, struct, sys, time

state = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 100


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(state, "drover.sock"))
    return s


def send(s, frame):
    data = json.dumps(frame).encode()
    s.sendall(struct.pack(">I", len(data)) + data)


def receive(s):
    header = b""
    while len(header) < 4:
        chunk = s.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    (length,) = struct.unpack(">I", header)
    payload = b""
    while len(payload) < length:
        payload += s.recv(length - len(payload))
    return json.loads(payload)


follower = connect()
send(follower, {"type": "events", "follow": True})
assert receive(follower)["type"] == "following"

latencies = []
for i in range(count):
    launcher = connect()
    send(launcher, {"type": "launch", "agent": "explore", "prompt": f"@result {i}"})
    task = receive(launcher)["task_id"]
    launcher.close()
    while True:
        event = receive(follower)
        if event["task_id"] == task and event["status"] == "completed":
            arrived_ms = time.time() * 1000
            break
    with open(os.path.join(state, "tasks", task, "transcript.jsonl")) as f:
        result_ms = next(json.loads(line)["t"] for line in f if '"type":"result"' in line)
    latencies.append(arrived_ms - result_ms)
    time.sleep(0.01)

latencies.sort()
print(f"notification latency (result frame -> line on events --follow, {count} tasks): "
      f"median {latencies[len(latencies) // 2]:.2f} ms, p90 {latencies[int(len(latencies) * 0.9)]:.2f} ms "
      f"(transcript times are whole ms: up to 1 ms too high)")

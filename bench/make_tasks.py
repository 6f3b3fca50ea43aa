#!/usr/bin/env python3
"""Writes COUNT completed tasks into STATE_DIR, as a daemon that ran them would have left
them, so that a daemon starting there knows COUNT tasks. Usage: make_tasks.py STATE_DIR COUNT"""
import json, os, random, sys

state, count = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(state, "tasks"), mode=0o700, exist_ok=True)
for i in range(count):
    task_id = "bg_%08x" % random.getrandbits(32)
    folder = os.path.join(state, "tasks", task_id)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    task = {
        "id": task_id, "session_id": "ses_%08x" % random.getrandbits(32), "agent": "explore", "provider": "mock",
        "model": None, "key": "explore", "description": f"earlier task {i}", "prompt": f"earlier task {i}",
        "status": "completed", "reason": "result", "error": None,
        "created_at": "2026-11-21T10:00:00.000Z", "started_at": "2026-11-21T10:00:00.010Z",
        "ended_at": "2026-11-21T10:00:01.010Z", "duration_ms": 1000, "pid": 1000 + i, "exit_code": 0, "signal": None,
        "progress": {"messages": 2, "tool_calls": 2, "last_tool": "read", "last_message": "done", "last_update": None},
        "result_path": os.path.join(folder, "result.md"), "ttl_ms": 1800000, "pool": "provider:mock", "slot": 0,
        "request": {"agent": "explore", "cwd": "/tmp"},
    }
    with open(os.path.join(folder, "task.json"), "w") as f:
        json.dump(task, f)
    with open(os.path.join(folder, "result.md"), "w") as f:
        f.write("done")

#!/usr/bin/env python3
"""An example drover worker: counts the words of each line of its prompt.

Each line is one step (a `progress` frame, then a pause of --line-delay seconds that a cancel
cuts short); follow-up prompts that arrive meanwhile are counted too. The result names the
total, with the counts in its data.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import drover_worker  # noqa: E402  (found beside this folder, or on PYTHONPATH)

options = argparse.ArgumentParser(description=__doc__)
options.add_argument("--line-delay", type=float, default=0.0, help="seconds of pretend work per line")
arguments = options.parse_args()


def count_words(task):
    lines = [line for line in task.prompt.splitlines() if line.strip()]
    task.message("Counting the words of %d line(s) for %s" % (len(lines), task.agent))
    counts = []
    while lines:
        task.todo(len(lines))
        line = lines.pop(0)
        task.progress("count_words", {"line": line})
        counts.append(len(line.split()))
        if task.wait(arguments.line_delay):
            return None  # cancelled: drover has already decided the task
        for follow_up in task.take_prompts():
            task.message(follow_up, role="user")
            lines.extend(text for text in follow_up.splitlines() if text.strip())
    task.todo(0)
    total = sum(counts)
    task.result("%d words in %d line(s)" % (total, len(counts)), data={"words": total, "per_line": counts})


drover_worker.run(count_words, worker="word-count", heartbeat=5)

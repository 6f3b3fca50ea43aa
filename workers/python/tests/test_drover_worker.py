"""Unit tests of drover_worker: the frame codec, the runner over real pipes, and the rebuild of
a conversation from a transcript. Run: python3 -m unittest discover -s workers/python/tests"""
import json
import os
import struct
import time
import unittest

from worker_driver import Driver, drover_worker, start_frame

ProtocolError = drover_worker.ProtocolError


def frames_from(data, max_frame_bytes=drover_worker.MAX_FRAME_BYTES):
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    reader = drover_worker.FrameReader(read_end, max_frame_bytes)
    try:
        frames = []
        while True:
            frame = reader.read(timeout=1)
            if frame is None:
                return frames
            frames.append(frame)
    finally:
        os.close(read_end)


def flood_with_sigterm(pid, seconds=10):
    """Sends SIGTERM to pid every millisecond until it has exited (a zombie, not yet reaped,
    so the pid cannot be anyone else's); returns how many went out."""
    deadline, sent = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        os.kill(pid, 15)
        sent += 1
        time.sleep(0.001)
    return sent


class FrameCodecTests(unittest.TestCase):
    def test_frames_round_trip(self):
        sent = [{"type": "message", "text": "naïve 🚀 \"quoted\"\n"}, {"type": "result", "text": "", "data": {"n": [1, 2.5, None]}}]
        data = b"".join(drover_worker.encode_frame(frame) for frame in sent)
        self.assertEqual(struct.unpack(">I", data[:4])[0], len(json.dumps(sent[0], ensure_ascii=False, separators=(",", ":")).encode()))
        self.assertEqual(frames_from(data), sent)

    def test_bad_frames_name_what_is_wrong_and_where(self):
        good = drover_worker.encode_frame({"type": "heartbeat"})
        at = len(good)
        cases = {
            b"\x00\x00\x00\x00": "the frame at byte %d has length 0" % at,
            b"\x00\x00\x01\x00": "claims 256 bytes, over the limit of 64",
            b"\x00\x00\x00\x03{x}": "the frame at byte %d is not JSON" % at,
            b"\x00\x00\x00\x02[]": "is not a JSON object",
            b"\x00\x00\x00\x0c{\"type\": 42}": "has no string 'type'",
            b"\x00\x00\x00\x03\"\xff\"": "is not UTF-8",
            b"\x00\x00\x00\x10{\"type\"": "input ended inside the frame at byte %d (7 of 16 bytes)" % at,
            b"\x00\x00": "inside the header of the frame at byte %d" % at,
        }
        for bad, expected in cases.items():
            with self.subTest(bad=bad):
                with self.assertRaises(ProtocolError) as caught:
                    frames_from(good + bad, max_frame_bytes=64)
                self.assertIn(expected, str(caught.exception))

    def test_a_frame_over_the_limit_is_refused_before_sending(self):
        with self.assertRaises(ValueError):
            drover_worker.encode_frame({"type": "message", "text": "x" * (drover_worker.MAX_FRAME_BYTES + 1)})
        with self.assertRaises(ValueError):
            drover_worker.encode_frame({"text": "no type"})


class RunnerTests(unittest.TestCase):
    def test_a_returned_string_is_the_result_and_print_goes_to_stderr(self):
        worker = Driver.python("""
import subprocess
def handle(task):
    print("stray print")
    subprocess.run(["echo", "stray child"])
    task.message("working on " + task.prompt)
    task.progress("grep", {"pattern": "x"}, text="searching")
    task.todo(1, 2)
    task.log("a note", level="debug")
    return "done: " + task.model
drover_worker.run(handle, worker="inline", version="7")
""")
        worker.send(start_frame("the prompt"))
        frames = worker.until("result")
        status, stderr = worker.finish()
        self.assertEqual(worker.frames[0], {"type": "hello", "protocol": 1, "worker": "inline", "version": "7"})
        self.assertEqual(frames, [
            {"type": "message", "role": "assistant", "text": "working on the prompt"},
            {"type": "progress", "tool": "grep", "input": {"pattern": "x"}, "text": "searching"},
            {"type": "todo", "open": 1, "total": 2},
            {"type": "log", "level": "debug", "text": "a note"},
            {"type": "result", "text": "done: echo"},
        ])
        self.assertEqual(status, 0)
        self.assertIn("stray print", stderr)
        self.assertIn("stray child", stderr)

    def test_an_exception_becomes_an_error_frame(self):
        worker = Driver.python("""
def handle(task):
    raise ValueError("boom")
drover_worker.run(handle)
""")
        worker.send(start_frame())
        error = worker.until("error")[-1]
        status, stderr = worker.finish()
        self.assertEqual(error, {"type": "error", "message": "ValueError: boom", "retryable": False})
        self.assertEqual(status, 1)
        self.assertIn("Traceback", stderr)

    def test_a_worker_error_keeps_its_retryable(self):
        worker = Driver.python("""
def handle(task):
    raise drover_worker.WorkerError("rate limited", retryable=True)
drover_worker.run(handle)
""")
        worker.send(start_frame())
        self.assertEqual(worker.until("error")[-1], {"type": "error", "message": "rate limited", "retryable": True})
        self.assertEqual(worker.finish()[0], 1)

    def test_attempt_rate_limits_and_usage(self):
        worker = Driver.python("""
def handle(task):
    task.message("attempt %d" % task.attempt)
    task.rate_limited()
    task.rate_limited(retry_after=1.25, scope="model", message="429 from the API")
    task.rate_limited(retry_after=0.3)
    task.rate_limited(retry_after=-2)
    task.usage(1200, 340)
    task.usage(2500, 610, cache_read_tokens=9000, cache_write_tokens=0, cost_usd=0.0185, model="m-1")
    task.error("rate limited", retryable=True)
drover_worker.run(handle)
""")
        worker.send(start_frame(attempt=3))
        frames = worker.until("error")
        self.assertEqual(worker.finish()[0], 0)
        self.assertEqual(frames, [
            {"type": "message", "role": "assistant", "text": "attempt 3"},
            {"type": "rate_limit", "scope": "provider"},
            {"type": "rate_limit", "retry_after_ms": 1250, "scope": "model", "message": "429 from the API"},
            {"type": "rate_limit", "retry_after_ms": 300, "scope": "provider"},
            {"type": "rate_limit", "retry_after_ms": 0, "scope": "provider"},
            {"type": "usage", "input_tokens": 1200, "output_tokens": 340},
            {"type": "usage", "input_tokens": 2500, "output_tokens": 610, "cache_read_tokens": 9000, "cache_write_tokens": 0,
             "cost_usd": 0.0185, "model": "m-1"},
            {"type": "error", "message": "rate limited", "retryable": True},
        ])

    def test_the_attempt_is_1_unless_drover_names_a_whole_number_from_1(self):
        cases = [({}, "1"), ({"attempt": None}, "1"), ({"attempt": 0}, "1"), ({"attempt": "2"}, "1"), ({"attempt": 1.5}, "1"),
                 ({"attempt": True}, "1"), ({"attempt": 2.0}, "2"), ({"attempt": 7}, "7")]
        for fields, expected in cases:
            with self.subTest(fields=fields):
                worker = Driver.python("drover_worker.run(lambda task: repr(task.attempt))")
                start = start_frame()
                start.pop("attempt", None)
                start.update(fields)
                worker.send(start)
                self.assertEqual(worker.until("result")[-1]["text"], expected)
                self.assertEqual(worker.finish()[0], 0)

    def test_bad_figures_are_refused_before_they_reach_drover(self):
        worker = Driver.python("""
def handle(task):
    bad = [
        lambda: task.rate_limited(scope="account"),
        lambda: task.rate_limited(retry_after="soon"),
        lambda: task.rate_limited(retry_after=float("nan")),
        lambda: task.usage(-1, 0),
        lambda: task.usage(1.5, 0),
        lambda: task.usage(True, 0),
        lambda: task.usage(1, 2, cache_read_tokens="3"),
        lambda: task.usage(1, 2, cost_usd=-0.1),
        lambda: task.usage(1, 2, cost_usd=float("inf")),
    ]
    messages = []
    for call in bad:
        try:
            call()
            messages.append("accepted")
        except ValueError as error:
            messages.append(str(error))
    return "\\n".join(messages)
drover_worker.run(handle)
""")
        worker.send(start_frame())
        frames = worker.until("result")
        worker.finish()
        self.assertEqual([frame["type"] for frame in frames], ["result"], "nothing was sent for the bad calls")
        self.assertEqual(frames[-1]["text"].split("\n"), [
            "scope must be 'provider' or 'model', got 'account'",
            "retry_after must be a finite number of seconds, got 'soon'",
            "retry_after must be a finite number of seconds, got nan",
            "input_tokens must be a whole number of 0 or more, got -1",
            "input_tokens must be a whole number of 0 or more, got 1.5",
            "input_tokens must be a whole number of 0 or more, got True",
            "cache_read_tokens must be a whole number of 0 or more, got '3'",
            "cost_usd must be a finite number of 0 or more, got -0.1",
            "cost_usd must be a finite number of 0 or more, got inf",
        ])

    def test_follow_up_prompts_reach_the_handler(self):
        worker = Driver.python("""
def handle(task):
    task.message("ready")
    first = task.next_prompt(timeout=5)
    second = task.next_prompt(timeout=5)
    task.result("%s | %s" % (first, second))
drover_worker.run(handle)
""")
        worker.send(start_frame())
        worker.until("message")
        worker.send({"type": "prompt", "text": "one"})
        worker.send({"type": "prompt", "text": "two"})
        self.assertEqual(worker.until("result")[-1]["text"], "one | two")
        self.assertEqual(worker.finish()[0], 0)

    def test_a_cancel_frame_ends_a_cooperative_handler_at_once(self):
        worker = Driver.python("""
def handle(task):
    task.message("working")
    while not task.wait(0.05):
        pass
    print("saw", task.cancel_reason)
drover_worker.run(handle)
""")
        worker.send(start_frame())
        worker.until("message")
        began = time.monotonic()
        worker.send({"type": "cancel", "reason": "user"})
        self.assertEqual(worker.rest(), [])
        status, stderr = worker.finish()
        self.assertLess(time.monotonic() - began, 1.0)
        self.assertEqual(status, 0)
        self.assertIn("saw cancelled (user)", stderr)

    def test_the_end_of_stdin_stops_a_handler_that_ignores_it_after_the_grace(self):
        worker = Driver.python("""
import time
def handle(task):
    task.message("busy")
    time.sleep(30)
drover_worker.run(handle, cancel_grace=0.3)
""")
        worker.send(start_frame())
        worker.until("message")
        began = time.monotonic()
        worker.close_stdin()
        status, stderr = worker.finish(timeout=5)
        self.assertLess(time.monotonic() - began, 2.0)
        self.assertEqual(status, 0)
        self.assertIn("did not return within 0.3 s of stdin closed", stderr)

    def test_sigterm_sets_cancelled(self):
        worker = Driver.python("""
def handle(task):
    task.message("working")
    task.cancelled.wait(10)
    print("reason:", task.cancel_reason)
drover_worker.run(handle)
""")
        worker.send(start_frame())
        worker.until("message")
        worker.process.terminate()
        status, stderr = worker.finish()
        self.assertEqual(status, 0)
        self.assertIn("reason: SIGTERM", stderr)

    def test_a_sigterm_landing_as_the_worker_leaves_never_kills_it(self):
        # drover sends SIGTERM with its cancel frame, and under load it lands at any moment,
        # even while the interpreter shuts down: the worker still ends by its own exit.
        for round in range(5):
            worker = Driver.python("""
import time
def handle(task):
    task.message("working")
    task.cancelled.wait(10)
    time.sleep(0.2)
drover_worker.run(handle)
""")
            worker.send(start_frame())
            worker.until("message")
            worker.send({"type": "cancel", "reason": "user"})
            sent = flood_with_sigterm(worker.process.pid)
            status, stderr = worker.finish()
            self.assertGreater(sent, 0, "round %d: SIGTERMs reached the worker before it left" % round)
            self.assertEqual(status, 0, "round %d: %s" % (round, stderr))

    def test_heartbeats_while_the_handler_is_quiet(self):
        worker = Driver.python("""
import time
def handle(task):
    time.sleep(0.7)
    return "ok"
drover_worker.run(handle, heartbeat=0.25)
""")
        worker.send(start_frame())
        frames = worker.until("result")
        worker.finish()
        self.assertGreaterEqual(sum(1 for frame in frames if frame["type"] == "heartbeat"), 2)

    def test_bad_input_from_drover_is_a_clear_error_and_exit_2(self):
        cases = [
            (b"", "stdin closed before the start frame"),
            (drover_worker.encode_frame({"type": "prompt", "text": "x"}), "expected a start frame first, got 'prompt'"),
            (drover_worker.encode_frame(start_frame()) + b"\x00\x00\x00\x00", "bad frame from drover: the frame at byte"),
            (drover_worker.encode_frame(start_frame()) + drover_worker.encode_frame({"type": "prompt"}), "a prompt frame without a string 'text'"),
            (drover_worker.encode_frame(start_frame(protocol=2)), "drover speaks protocol 2"),
        ]
        for data, expected in cases:
            with self.subTest(expected=expected):
                worker = Driver.python("""
def handle(task):
    task.cancelled.wait(10)
drover_worker.run(handle)
""")
                worker.send_bytes(data)
                if not data:
                    worker.close_stdin()
                worker.rest()
                status, stderr = worker.finish()
                self.assertEqual(status, 2, stderr)
                self.assertIn(expected, stderr)


class ConversationTests(unittest.TestCase):
    def test_a_session_is_rebuilt_from_its_frames(self):
        def out(kind, **fields):
            return dict(fields, t=1, dir="out", type=kind)

        def came(kind, **fields):
            return dict(fields, t=1, dir="in", type=kind)

        frames = [
            out("start", task_id="bg_1", prompt="first question"),
            came("hello", worker="w"),
            came("message", role="assistant", text="Hello, "),
            came("message", role="assistant", text="world."),
            # A follow-up that arrived mid-answer; the worker echoed it when it got to it.
            out("prompt", text="and then?"),
            came("message", role="assistant", text=" More."),
            came("message", role="user", text="and then?"),
            came("message", role="assistant", text="Then this."),
            came("result", text="Then this."),
            # A task that failed before answering: its prompt joins the next one.
            out("start", task_id="bg_2", prompt="second question"),
            came("error", message="boom"),
            out("start", task_id="bg_3", prompt="third question"),
            came("message", role="assistant", text="working..."),
            came("result", text="The third answer."),
            out("cancel", reason="user"),
            # The task being started and anything after it are left out.
            out("start", task_id="bg_4", prompt="fourth question"),
            came("message", role="assistant", text="not yet"),
        ]
        self.assertEqual(drover_worker.rebuild_conversation(frames, current_task_id="bg_4"), [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "Hello, world. More."},
            {"role": "user", "content": "and then?"},
            {"role": "assistant", "content": "Then this."},
            {"role": "user", "content": "second question\n\nthird question"},
            {"role": "assistant", "content": "The third answer."},
        ])

    def test_a_transcript_file_with_a_torn_last_line(self):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "drover-worker-test-%d.jsonl" % os.getpid())
        try:
            with open(path, "w") as file:
                file.write(json.dumps({"t": 1, "dir": "out", "type": "start", "task_id": "bg_1", "prompt": "q"}) + "\n")
                file.write(json.dumps({"t": 2, "dir": "in", "type": "result", "text": "a"}) + "\n")
                file.write('{"t": 3, "dir": "in", "ty')
            self.assertEqual(len(drover_worker.read_transcript(path)), 2)
            self.assertEqual(drover_worker.read_transcript(path + ".missing"), [])
        finally:
            os.unlink(path)


if __name__ == "__main__":
    unittest.main()

"""Plays drover's side of the pipes for the tests: starts a worker, sends it frames, reads its
frames back. Every wait is bounded."""
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = os.path.dirname(HERE)
sys.path.insert(0, WORKERS)
import drover_worker  # noqa: E402


def start_frame(prompt="hello", **fields):
    frame = {"type": "start", "protocol": 1, "task_id": "bg_0000000a", "session_id": "ses_0000000a", "agent": "test",
             "provider": "local", "model": "echo", "description": "", "prompt": prompt, "resume": False,
             "workdir": os.getcwd(), "deadline_ms": None}
    frame.update(fields)
    return frame


class Driver:
    def __init__(self, argv, env=None):
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env=env, start_new_session=True)
        self.reader = drover_worker.FrameReader(self.process.stdout.fileno())
        self.frames = []

    @classmethod
    def python(cls, source, env=None):
        """A worker written inline: `source` runs with drover_worker imported."""
        return cls([sys.executable, "-c", "import sys; sys.path.insert(0, %r)\nimport drover_worker\n%s" % (WORKERS, source)], env=env)

    def send(self, frame):
        self.send_bytes(drover_worker.encode_frame(frame))

    def send_bytes(self, data):
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def close_stdin(self):
        self.process.stdin.close()

    def next(self, timeout=5.0):
        """The worker's next frame other than hello, or None at the end of its stdout."""
        while True:
            frame = self.reader.read(timeout=timeout)
            if frame is None:
                return None
            self.frames.append(frame)
            if frame["type"] != "hello":
                return frame

    def until(self, kind, timeout=5.0):
        """Frames up to and with the first of type `kind`."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            frame = self.next(timeout=max(0.01, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError("stdout ended before a %s frame; saw %r; stderr: %s" % (kind, seen, self.stderr_so_far()))
            seen.append(frame)
            if frame["type"] == kind:
                return seen

    def rest(self, timeout=5.0):
        """Every frame until the worker's stdout ends."""
        frames = []
        while True:
            frame = self.next(timeout=timeout)
            if frame is None:
                return frames
            frames.append(frame)

    def finish(self, timeout=5.0):
        """Waits for the exit (killing the group past `timeout`); returns (status, stderr)."""
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError("the worker did not exit within %g s" % timeout)
        finally:
            if self.process.stdin and not self.process.stdin.closed:
                try:
                    self.process.stdin.close()
                except BrokenPipeError:
                    pass
        stderr = self.process.stderr.read().decode("utf-8", "replace")
        self.process.stdout.close()
        self.process.stderr.close()
        return status, stderr

    def stderr_so_far(self):
        return "(read after exit)"


class FakeServer:
    """fake_model_server.py as a child process, stopped by `stop()`."""

    def __init__(self, key=None, log_path=None):
        self.log_path = log_path or os.path.join(os.environ.get("TMPDIR", "/tmp"), "fake-model-%d-%d.jsonl" % (os.getpid(), id(self)))
        argv = [sys.executable, os.path.join(HERE, "fake_model_server.py"), "--log", self.log_path] + (["--key", key] if key else [])
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise AssertionError("the fake server did not start: %r" % line)
        self.port = int(line)

    def url(self, api):
        return "http://127.0.0.1:%d%s" % (self.port, "/v1" if api == "openai" else "")

    def requests(self):
        with open(self.log_path) as log:
            return [json.loads(line) for line in log if line.strip()]

    def stop(self):
        self.process.kill()
        self.process.wait(timeout=5)
        self.process.stdout.close()
        self.process.stderr.close()
        if os.path.exists(self.log_path):
            os.unlink(self.log_path)

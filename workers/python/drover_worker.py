"""Write a drover worker in Python in a few lines (standard library only, Python >= 3.8).

    import drover_worker

    def handle(task):
        task.message("looking into " + task.prompt)
        task.progress("grep", {"pattern": "TODO"})
        return "found 3 TODOs"            # becomes the result frame

    drover_worker.run(handle)

`run` reads drover's `start` frame, calls the handler with a `Task`, and turns what happens
into frames: a returned string is the result, a raised exception an `error` frame, a raised
`WorkerError` an error with its own `retryable`. Follow-up `prompt` frames queue up for
`task.next_prompt()`; a `cancel` frame, SIGTERM or the end of stdin set `task.cancelled`
and the worker exits at the latest `cancel_grace` seconds later. stdout carries only frames:
once `run` starts, `print()` (and any child process's stdout) goes to stderr, which drover
saves in the task's stderr.log.

The wire format (the README's "The worker protocol, in brief"): a 4-byte big-endian
length N, then N bytes of UTF-8 JSON, an object with a string `type`.
"""
from __future__ import annotations

import json
import math
import os
import select
import signal
import struct
import sys
import threading
import time
import traceback
from contextlib import contextmanager

__all__ = [
    "run", "Task", "WorkerError", "Cancelled", "ProtocolError", "FrameReader", "encode_frame",
    "decode_payload", "rebuild_conversation", "read_transcript", "PROTOCOL_VERSION", "MAX_FRAME_BYTES",
]

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")

# Exit codes of run(): 0 done (or cancelled), 1 the handler failed, 2 drover broke the protocol.
EXIT_OK = 0
EXIT_HANDLER_FAILED = 1
EXIT_PROTOCOL = 2


class ProtocolError(Exception):
    """A frame from drover that breaks the protocol; the message says what and at which byte."""


class Cancelled(Exception):
    """Raised by `Task.check()` once the task is cancelled; `run` then exits quietly."""


class WorkerError(Exception):
    """Raise it from a handler to end the task with an `error` frame of this message."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.retryable = retryable


# ---------------------------------------------------------------------------------------------
# Frames


def encode_frame(frame: dict) -> bytes:
    """A frame's bytes: the length header, then compact UTF-8 JSON."""
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ValueError("a frame is a dict with a string 'type', got %r" % (frame,))
    # ensure_ascii=False keeps text readable; "replace" turns lone surrogates into "?" rather
    # than sending bytes that are not UTF-8 (drover would end the task as a protocol error).
    payload = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError("a %s frame of %d bytes is over drover's limit of %d" % (frame["type"], len(payload), MAX_FRAME_BYTES))
    return _HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes, offset: int = 0) -> dict:
    """One frame's JSON object; `offset` (the frame's first byte in the stream) is for messages."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError("the frame at byte %d is not UTF-8 (bad byte at %d)" % (offset, offset + 4 + error.start))
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ProtocolError("the frame at byte %d is not JSON: %s" % (offset, error))
    if not isinstance(value, dict):
        raise ProtocolError("the frame at byte %d is not a JSON object" % offset)
    if not isinstance(value.get("type"), str):
        raise ProtocolError("the frame at byte %d has no string 'type'" % offset)
    return value


class FrameReader:
    """Reads frames from a file descriptor. `offset` counts the bytes of whole frames read."""

    def __init__(self, fd: int, max_frame_bytes: int = MAX_FRAME_BYTES):
        self.fd = fd
        self.max_frame_bytes = max_frame_bytes
        self.offset = 0
        self._buffer = bytearray()

    def _fill(self, deadline):
        """Reads what is there; False at the end of input. Raises TimeoutError past `deadline`."""
        if deadline is not None:
            remaining = deadline - time.monotonic()
            ready = select.select([self.fd], [], [], max(0.0, remaining))[0] if remaining > 0 else []
            if not ready:
                raise TimeoutError("no frame within the time allowed")
        chunk = os.read(self.fd, 65536)
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def read(self, timeout=None):
        """The next frame, or None at a clean end of input (between frames)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._buffer) < 4:
            if not self._fill(deadline):
                if not self._buffer:
                    return None
                raise ProtocolError("input ended inside the header of the frame at byte %d (%d of 4 bytes)" % (self.offset, len(self._buffer)))
        (length,) = _HEADER.unpack_from(self._buffer)
        if length == 0:
            raise ProtocolError("the frame at byte %d has length 0" % self.offset)
        if length > self.max_frame_bytes:
            raise ProtocolError("the frame at byte %d claims %d bytes, over the limit of %d" % (self.offset, length, self.max_frame_bytes))
        while len(self._buffer) < 4 + length:
            if not self._fill(deadline):
                raise ProtocolError("input ended inside the frame at byte %d (%d of %d bytes)" % (self.offset, len(self._buffer) - 4, length))
        payload = bytes(self._buffer[4:4 + length])
        del self._buffer[:4 + length]
        frame = decode_payload(payload, self.offset)
        self.offset += 4 + length
        return frame


class _FrameWriter:
    """Writes whole frames to one descriptor, one thread at a time."""

    def __init__(self, fd: int):
        self.fd = fd
        self.lock = threading.Lock()
        self.last_sent = time.monotonic()
        self.broken = False

    def send(self, frame: dict) -> bool:
        data = memoryview(encode_frame(frame))
        with self.lock:
            if self.broken:
                return False
            try:
                while data:
                    data = data[os.write(self.fd, data):]
            except OSError:
                # drover is gone (EPIPE): nobody will read anything more.
                self.broken = True
                return False
            self.last_sent = time.monotonic()
            return True


# ---------------------------------------------------------------------------------------------
# Transcripts


def read_transcript(path):
    """The frames of a drover transcript (JSON lines: {"t", "dir", ...frame}). A line that does
    not parse (the last one may still be being written) is skipped."""
    if not path:
        return []
    frames = []
    try:
        with open(path, "rb") as file:
            for line in file:
                try:
                    value = json.loads(line.decode("utf-8"))
                except ValueError:
                    continue
                if isinstance(value, dict):
                    frames.append(value)
    except FileNotFoundError:
        return []
    return frames


def rebuild_conversation(frames, current_task_id=None):
    """A chat history, [{"role": "user"|"assistant", "content": str}], from a session's frames.

    User turns are the prompts drover sent (`start` and `prompt` frames, "dir": "out"); when a
    worker echoed a follow-up prompt back as a `message` with role user, that echo marks where
    the turn began and the `prompt` frame itself is skipped. An assistant turn is the `result`
    text when the turn ended with one, else its assistant messages joined as they came (a
    streaming worker's messages are pieces of one text). Frames from `current_task_id` onwards
    are left out: they are the task being started. Neighbouring turns of one role are merged
    and the history starts with a user turn, as chat APIs require.
    """
    # Follow-up prompts echoed by the worker, per task (a task's frames follow its start frame).
    echoes = []
    for frame in frames:
        if frame.get("dir") == "out" and frame.get("type") == "start":
            echoes.append({})
        elif echoes and frame.get("dir") == "in" and frame.get("type") == "message" and frame.get("role") == "user":
            text = frame.get("text")
            if isinstance(text, str):
                echoes[-1][text] = echoes[-1].get(text, 0) + 1

    turns = []
    parts = []
    result = [None]

    def add(role, text):
        if not isinstance(text, str) or not text:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": role, "content": text})

    def close_assistant_turn():
        add("assistant", result[0] if result[0] else "".join(parts))
        del parts[:]
        result[0] = None

    task_index = -1
    for frame in frames:
        direction, kind = frame.get("dir"), frame.get("type")
        if direction == "out" and kind == "start":
            if current_task_id and frame.get("task_id") == current_task_id:
                break
            task_index += 1
            close_assistant_turn()
            add("user", frame.get("prompt"))
        elif direction == "out" and kind == "prompt":
            text = frame.get("text")
            seen = echoes[task_index] if 0 <= task_index < len(echoes) else {}
            if seen.get(text, 0) > 0:
                seen[text] -= 1
                continue
            close_assistant_turn()
            add("user", text)
        elif direction == "in" and kind == "message":
            role = frame.get("role", "assistant")
            if role == "user":
                close_assistant_turn()
                add("user", frame.get("text"))
            elif role == "assistant" and isinstance(frame.get("text"), str):
                parts.append(frame["text"])
        elif direction == "in" and kind == "result" and isinstance(frame.get("text"), str):
            result[0] = frame["text"]
    close_assistant_turn()
    while turns and turns[0]["role"] != "user":
        turns.pop(0)
    return turns


# ---------------------------------------------------------------------------------------------
# The task


class Task:
    """One drover task: the `start` frame's fields, and the frames a worker sends."""

    def __init__(self, start: dict, writer: _FrameWriter):
        self.start = dict(start)
        self.id = _text(start.get("task_id"))
        self.session_id = _text(start.get("session_id"))
        self.agent = _text(start.get("agent"))
        self.provider = start.get("provider") if isinstance(start.get("provider"), str) else None
        self.model = start.get("model") if isinstance(start.get("model"), str) else None
        self.description = _text(start.get("description"))
        self.prompt = _text(start.get("prompt"))
        self.resume = start.get("resume") is True
        self.transcript_path = start.get("transcript_path") if isinstance(start.get("transcript_path"), str) else None
        self.workdir = _text(start.get("workdir"))
        #: Which attempt at the task this run is (1-based; drover retries retryable failures).
        self.attempt = _attempt_number(start.get("attempt"))
        deadline_ms = start.get("deadline_ms")
        self.deadline = deadline_ms / 1000.0 if isinstance(deadline_ms, (int, float)) and not isinstance(deadline_ms, bool) else None
        #: Set on a `cancel` frame, SIGTERM, or the end of stdin (drover decided the task or left).
        self.cancelled = threading.Event()
        self.cancel_reason = None
        #: True once a result or error frame was sent.
        self.finished = False
        self._writer = writer
        self._changed = threading.Condition()
        self._prompts = []
        self._cancel_callbacks = []

    # -- frames to drover -------------------------------------------------------------------

    def send(self, frame: dict) -> bool:
        """Sends any frame; False when drover no longer listens."""
        return self._writer.send(frame)

    def message(self, text: str, role: str = "assistant") -> bool:
        return self.send({"type": "message", "role": role, "text": str(text)})

    def progress(self, tool: str, input=None, text=None) -> bool:
        """A tool call (drover counts them for its circuit breaker)."""
        frame = {"type": "progress", "tool": str(tool), "input": input}
        if text is not None:
            frame["text"] = str(text)
        return self.send(frame)

    def todo(self, open: int, total=None) -> bool:
        """Open todos hold off drover's idle and stability completion."""
        frame = {"type": "todo", "open": int(open)}
        if total is not None:
            frame["total"] = int(total)
        return self.send(frame)

    def heartbeat(self) -> bool:
        return self.send({"type": "heartbeat"})

    def log(self, text: str, level: str = "info") -> bool:
        return self.send({"type": "log", "level": level, "text": str(text)})

    def idle(self) -> bool:
        return self.send({"type": "idle"})

    def result(self, text: str, data=None) -> bool:
        """Ends the task as completed, with `data` (any JSON value) kept in task.json."""
        frame = {"type": "result", "text": str(text)}
        if data is not None:
            frame["data"] = data
        self.finished = True
        return self.send(frame)

    def error(self, message: str, retryable: bool = False) -> bool:
        self.finished = True
        return self.send({"type": "error", "message": str(message), "retryable": bool(retryable)})

    def rate_limited(self, retry_after=None, scope="provider", message=None) -> bool:
        """Tells drover the provider refused for a rate or quota limit, so that it cools the
        task's pool down (`scope` "provider", or "model" for this model's pool only) for
        `retry_after` seconds (a float is fine; None: drover's own backoff). The task goes on:
        retry yourself, or end it, e.g. with `error(..., retryable=True)`."""
        if scope not in ("provider", "model"):
            raise ValueError("scope must be 'provider' or 'model', got %r" % (scope,))
        frame = {"type": "rate_limit"}
        if retry_after is not None:
            frame["retry_after_ms"] = _milliseconds("retry_after", retry_after)
        frame["scope"] = scope
        if message is not None:
            frame["message"] = str(message)
        return self.send(frame)

    def usage(self, input_tokens, output_tokens, cache_read_tokens=None, cache_write_tokens=None, cost_usd=None, model=None) -> bool:
        """Reports this attempt's token usage so far: totals, not increments (drover keeps the
        latest). `cost_usd` is in US dollars; without it drover prices the tokens from its
        config. Bad figures raise ValueError here rather than reaching drover."""
        frame = {"type": "usage", "input_tokens": _count("input_tokens", input_tokens), "output_tokens": _count("output_tokens", output_tokens)}
        if cache_read_tokens is not None:
            frame["cache_read_tokens"] = _count("cache_read_tokens", cache_read_tokens)
        if cache_write_tokens is not None:
            frame["cache_write_tokens"] = _count("cache_write_tokens", cache_write_tokens)
        if cost_usd is not None:
            if isinstance(cost_usd, bool) or not isinstance(cost_usd, (int, float)) or not math.isfinite(cost_usd) or cost_usd < 0:
                raise ValueError("cost_usd must be a finite number of 0 or more, got %r" % (cost_usd,))
            frame["cost_usd"] = cost_usd
        if model is not None:
            frame["model"] = str(model)
        return self.send(frame)

    @property
    def seconds_since_last_frame(self) -> float:
        return time.monotonic() - self._writer.last_sent

    # -- time, cancellation and follow-up prompts -----------------------------------------

    def time_left(self):
        """Seconds until the task's deadline (its ttl), or None without one."""
        return None if self.deadline is None else self.deadline - time.time()

    def wait(self, seconds: float) -> bool:
        """Sleeps up to `seconds`, less if cancelled; True when cancelled."""
        return self.cancelled.wait(max(0.0, seconds))

    def check(self):
        """Raises Cancelled once the task is cancelled."""
        if self.cancelled.is_set():
            raise Cancelled(self.cancel_reason or "cancelled")

    def on_cancel(self, callback):
        """Calls `callback()` (from another thread) when the task is cancelled; at once if it
        already is. Use it to interrupt a blocking call, e.g. shut a socket down."""
        with self._changed:
            if not self.cancelled.is_set():
                self._cancel_callbacks.append(callback)
                return
        _call_quietly(callback)

    def next_prompt(self, timeout: float = 0.0):
        """The next follow-up prompt's text, waiting up to `timeout` seconds; None if there is
        none by then or the task is cancelled."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._changed:
            while not self._prompts and not self.cancelled.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self._prompts.pop(0) if self._prompts else None

    def take_prompts(self):
        """Every follow-up prompt that has arrived, oldest first (without waiting)."""
        with self._changed:
            prompts, self._prompts = self._prompts, []
            return prompts

    @contextmanager
    def keep_alive(self, interval: float = 5.0):
        """Sends a heartbeat whenever nothing was sent for `interval` seconds, inside the block.
        Use it around local work only: while waiting on a remote server, let silence be seen
        (drover's staleTimeout is how a stalled task is found)."""
        stop = threading.Event()

        def beat():
            while not stop.wait(min(interval, 1.0)):
                if self.seconds_since_last_frame >= interval:
                    self.heartbeat()

        thread = threading.Thread(target=beat, name="drover-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=2.0)

    # -- transcripts --------------------------------------------------------------------------

    def transcript(self):
        """The session's earlier frames (present when resuming), as dicts."""
        return read_transcript(self.transcript_path)

    def conversation(self):
        """The session's earlier turns as chat messages (see `rebuild_conversation`)."""
        return rebuild_conversation(self.transcript(), current_task_id=self.id)

    # -- fed by the runner ----------------------------------------------------------------------

    def _add_prompt(self, text: str):
        with self._changed:
            self._prompts.append(text)
            self._changed.notify_all()

    def _cancel(self, reason: str, announce=None) -> bool:
        """Marks the task cancelled; False if it already was. `announce` runs first, so that
        what it says is out before a handler that sees the cancel can end the process."""
        with self._changed:
            if self.cancelled.is_set():
                return False
            if announce is not None:
                _call_quietly(announce)
            self.cancel_reason = reason
            self.cancelled.set()
            callbacks, self._cancel_callbacks = self._cancel_callbacks, []
            self._changed.notify_all()
        for callback in callbacks:
            _call_quietly(callback)
        return True


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _attempt_number(value) -> int:
    """The start frame's `attempt`: a whole number from 1; 1 when absent (an older drover)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 1 or value != int(value):
        return 1
    return int(value)


def _count(name, value) -> int:
    """A token count for a frame: a whole number of 0 or more (drover refuses anything else)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or value != int(value):
        raise ValueError("%s must be a whole number of 0 or more, got %r" % (name, value))
    return int(value)


def _milliseconds(name, seconds) -> int:
    """Seconds as whole milliseconds, rounded up (never sooner than asked); negative is 0."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise ValueError("%s must be a finite number of seconds, got %r" % (name, seconds))
    return max(0, int(math.ceil(seconds * 1000 - 1e-6)))


def _call_quietly(callback):
    try:
        callback()
    except Exception:
        traceback.print_exc(file=sys.stderr)


def _say(text: str):
    """A line on stderr (drover keeps it in the task's stderr.log)."""
    try:
        sys.stderr.write("drover_worker: %s\n" % text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------------------------------------
# The runner


def run(handler, worker=None, version="1", heartbeat=None, cancel_grace=2.0, start_timeout=60.0):
    """Runs `handler(task)` as a drover worker and exits the process with its status.

    worker, version  sent in the `hello` frame (worker defaults to the script's name)
    heartbeat        seconds: send a heartbeat whenever nothing was sent for this long while
                     the handler runs (None: never; see Task.keep_alive for the caveat)
    cancel_grace     seconds a handler has to return after a cancel, SIGTERM or the end of
                     stdin, before the worker exits anyway
    start_timeout    seconds to wait for the `start` frame
    """
    # The process leaves once serve returns, and a SIGTERM that comes with drover's cancel
    # frame may still land then: it must never find the default action. serve puts back the
    # handler it found, so the one it finds is "ignore" (set before, leaving no gap after).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    status = serve(handler, worker=worker, version=version, heartbeat=heartbeat,
                   cancel_grace=cancel_grace, start_timeout=start_timeout)
    sys.exit(status)


def serve(handler, worker=None, version="1", heartbeat=None, cancel_grace=2.0, start_timeout=60.0):
    """Like `run`, but returns the exit status instead of exiting."""
    frames_in, frames_out = _reserve_standard_streams()
    writer = _FrameWriter(frames_out)
    reader = FrameReader(frames_in)
    name = worker or os.path.basename(sys.argv[0] or "python-worker")
    writer.send({"type": "hello", "protocol": PROTOCOL_VERSION, "worker": name, "version": str(version)})

    try:
        start = reader.read(timeout=start_timeout)
    except TimeoutError:
        _say("no start frame from drover within %g s" % start_timeout)
        return EXIT_PROTOCOL
    except ProtocolError as error:
        _say("bad frame from drover: %s" % error)
        return EXIT_PROTOCOL
    if start is None:
        _say("stdin closed before the start frame")
        return EXIT_PROTOCOL
    if start["type"] != "start":
        _say("bad frame from drover: expected a start frame first, got %r" % start["type"])
        return EXIT_PROTOCOL
    protocol = start.get("protocol", PROTOCOL_VERSION)
    if protocol != PROTOCOL_VERSION:
        _say("drover speaks protocol %r; this module speaks %d" % (protocol, PROTOCOL_VERSION))
        writer.send({"type": "error", "message": "unsupported protocol %r (drover_worker speaks %d)" % (protocol, PROTOCOL_VERSION), "retryable": False})
        return EXIT_PROTOCOL

    task = Task(start, writer)

    def stop(reason):
        if task._cancel(reason, announce=lambda: _say("stopping: %s" % reason)):
            exit_later = threading.Timer(cancel_grace, _exit_after_grace, args=(reason, cancel_grace))
            exit_later.daemon = True
            exit_later.start()

    threading.Thread(target=_read_frames, args=(reader, task, writer, stop), name="drover-frames", daemon=True).start()
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        # The handler runs on this thread; stopping from another one keeps the signal handler
        # clear of the locks this thread may hold.
        previous_sigterm = signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=stop, args=("SIGTERM",), daemon=True).start())

    keep_alive = task.keep_alive(heartbeat) if heartbeat else _nothing()
    try:
        with keep_alive:
            value = handler(task)
        if not task.finished and value is not None:
            if not isinstance(value, str):
                raise TypeError("the handler returned %s; return the result text (a str) or None" % type(value).__name__)
            task.result(value)
        return EXIT_OK
    except Cancelled:
        return EXIT_OK
    except WorkerError as error:
        task.error(error.message, error.retryable)
        return EXIT_HANDLER_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        if task.cancelled.is_set():
            return EXIT_OK  # a failure caused by the cancel itself: the task is decided already
        task.error("%s: %s" % (type(error).__name__, error), retryable=False)
        return EXIT_HANDLER_FAILED
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


@contextmanager
def _nothing():
    yield


def _reserve_standard_streams():
    """Moves the frame channels off fds 0 and 1, so that stray print()s, input()s and child
    processes cannot corrupt them: fd 1 becomes stderr and fd 0 /dev/null. Returns the
    (in, out) descriptors, which are close-on-exec (os.dup's default)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):
        pass
    frames_in = os.dup(0)
    frames_out = os.dup(1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull, "r")
    return frames_in, frames_out


def _read_frames(reader, task, writer, stop):
    """Reads drover's frames after `start` until the end of input."""
    while True:
        try:
            frame = reader.read()
        except ProtocolError as error:
            _say("bad frame from drover: %s" % error)
            writer.send({"type": "error", "message": "bad frame from drover: %s" % error, "retryable": False})
            _flush_and_exit(EXIT_PROTOCOL)
            return
        except OSError as error:
            stop("stdin unreadable: %s" % error)
            return
        if frame is None:
            stop("stdin closed")
            return
        kind = frame["type"]
        if kind == "prompt":
            text = frame.get("text")
            if not isinstance(text, str):
                _say("bad frame from drover: a prompt frame without a string 'text'")
                writer.send({"type": "error", "message": "bad frame from drover: a prompt frame without a string 'text'", "retryable": False})
                _flush_and_exit(EXIT_PROTOCOL)
                return
            task._add_prompt(text)
        elif kind == "cancel":
            reason = frame.get("reason")
            stop("cancelled (%s)" % reason if isinstance(reason, str) else "cancelled")
        # Other types (a second start included) are ignored, as drover ignores unknown ones.


def _exit_after_grace(reason, grace):
    _say("the handler did not return within %g s of %s; exiting" % (grace, reason))
    _flush_and_exit(EXIT_OK)


def _flush_and_exit(code):
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)

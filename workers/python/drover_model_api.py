#!/usr/bin/env python3
"""drover-model-api: a drover worker that holds a chat session with a model API directly.

    drover_model_api.py --api openai    --base-url https://api.openai.com/v1 --api-key-env OPENAI_API_KEY
    drover_model_api.py --api openai    --base-url http://127.0.0.1:8080/v1 --no-api-key   (llama.cpp)
    drover_model_api.py --api anthropic --base-url https://api.anthropic.com --api-key-env ANTHROPIC_API_KEY

The model is the task's (the start frame's `model`, from the agent or the task; --model is the
fallback). Answers stream in (OpenAI-compatible chat completions or the Anthropic Messages API,
both as server-sent events) and are passed on as `message` frames, coalesced at paragraph
breaks or every --flush-interval seconds. The result frame carries the whole last answer and,
in `data`, the model, the token usage, the stop reason and how many requests it took; `usage`
frames report the tokens (and, with --price-input/--price-output, the cost) as the API counts
them. Follow-up prompts that arrive while it answers are answered in turn, in the same task; a
resumed session is rebuilt from drover's transcript.

A rate limit (HTTP 429, 529, or an `overloaded_error` / `rate_limit_error`) is reported to
drover with a `rate_limit` frame (carrying the server's retry-after) and, by default, ends the
attempt as a retryable error at once: drover then cools the whole provider pool down and
retries the task, so one backoff is shared by every task on that account. --max-retries N
lets the worker retry rate limits itself first. Other transient failures (408, 409, 5xx other
than 529) are retried here up to --max-server-retries times (default 2), then end the attempt
as a retryable error.
"""
import argparse
import email.utils
import http.client
import json
import math
import os
import socket
import ssl
import sys
import time
from datetime import timezone
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import drover_worker  # noqa: E402
from drover_worker import Cancelled, WorkerError  # noqa: E402

VERSION = "1"
QUOTE_CHARS = 200
MAX_LINE_BYTES = 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
# A heartbeat goes out with received data only, never on a timer: a stalled stream must stay
# silent so that drover's staleTimeout can end the task.
HEARTBEAT_AFTER_QUIET_SECONDS = 2.0
RETRY_HEARTBEAT_SECONDS = 5.0
# Statuses and error types that mean "the provider refused for a rate or capacity limit": the
# pool should cool down. Other transient failures are retried by the worker itself.
RATE_LIMIT_STATUSES = {429, 529}
RATE_LIMIT_ERROR_TYPES = {"rate_limit_error", "overloaded_error"}
SERVER_RETRY_STATUSES = {408, 409}
TOKENS_PER_PRICE = 1_000_000


def quote(text, limit=QUOTE_CHARS):
    """`text` for an error message: one line, cut to `limit` characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def describe(error):
    """An OSError as the system says it, e.g. "[Errno 111] Connection refused"."""
    if isinstance(error, socket.timeout) or (isinstance(error, TimeoutError) and not error.args):
        return "timed out"
    text = str(error)
    return text if text else type(error).__name__


# ---------------------------------------------------------------------------------------------
# Options


class UsageError(Exception):
    pass


class Options(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse_options(argv):
    parser = Options(prog="drover_model_api.py", description="A drover worker for model APIs (OpenAI-compatible or Anthropic).")
    parser.add_argument("--api", choices=["openai", "anthropic"], required=True, help="the API's dialect")
    parser.add_argument("--base-url", help="openai: up to and with /v1 (default https://api.openai.com/v1); anthropic: default https://api.anthropic.com")
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--api-key-env", help="the environment variable that holds the key (default OPENAI_API_KEY or ANTHROPIC_API_KEY); list it in the agent's passEnv")
    key.add_argument("--no-api-key", action="store_true", help="send no key (local servers)")
    parser.add_argument("--model", help="the model when the task names none")
    parser.add_argument("--system", help="a system prompt")
    parser.add_argument("--max-tokens", type=int, help="most tokens per answer (anthropic default 4096; openai: the server's default)")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--anthropic-version", default="2023-06-01")
    parser.add_argument("--no-usage", action="store_true", help="openai: don't ask for stream_options.include_usage (servers that refuse it)")
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to connect (default 10)")
    parser.add_argument("--read-timeout", type=float, default=120.0, help="seconds of silence from the server before giving up (default 120)")
    parser.add_argument("--max-retries", type=int, default=0,
                        help="retries of rate-limited requests (429, 529, overloaded_error) by the worker itself; default 0: "
                             "report the limit and end the attempt, so that drover's pool-wide backoff decides")
    parser.add_argument("--max-server-retries", type=int, default=2, help="retries of 408, 409 and other 5xx answers (default 2)")
    parser.add_argument("--max-retry-wait", type=float, default=60.0, help="cap in seconds on each wait before a retry (default 60)")
    parser.add_argument("--flush-interval", type=float, default=0.5, help="seconds between message frames while text streams in (default 0.5)")
    parser.add_argument("--price-input", type=float, metavar="USD", help="US dollars per million input tokens: usage frames then carry cost_usd")
    parser.add_argument("--price-output", type=float, metavar="USD", help="US dollars per million output tokens")
    parser.add_argument("--price-cache-read", type=float, metavar="USD", help="per million tokens read from the prompt cache (default: --price-input)")
    parser.add_argument("--price-cache-write", type=float, metavar="USD", help="per million tokens written to the prompt cache (default: --price-input)")
    options = parser.parse_args(argv)
    for name in ("connect_timeout", "read_timeout", "flush_interval"):
        if getattr(options, name) <= 0:
            raise UsageError("--%s must be more than 0" % name.replace("_", "-"))
    if options.max_retries < 0 or options.max_server_retries < 0 or options.max_retry_wait < 0:
        raise UsageError("--max-retries, --max-server-retries and --max-retry-wait must not be negative")
    prices = ("price_input", "price_output", "price_cache_read", "price_cache_write")
    for name in prices:
        value = getattr(options, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UsageError("--%s must be a number of 0 or more" % name.replace("_", "-"))
    if (options.price_input is None) != (options.price_output is None):
        raise UsageError("--price-input and --price-output go together: give both, or neither")
    if options.price_input is None and (options.price_cache_read is not None or options.price_cache_write is not None):
        raise UsageError("--price-cache-read and --price-cache-write need --price-input and --price-output")
    if options.base_url is None:
        options.base_url = "https://api.openai.com/v1" if options.api == "openai" else "https://api.anthropic.com"
    if options.api_key_env is None and not options.no_api_key:
        options.api_key_env = "OPENAI_API_KEY" if options.api == "openai" else "ANTHROPIC_API_KEY"
    if options.max_tokens is None and options.api == "anthropic":
        options.max_tokens = 4096
    parts = urlsplit(options.base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("--base-url %s is not an http(s) URL" % quote(options.base_url))
    return options


def endpoint(options):
    base = options.base_url.rstrip("/")
    if options.api == "openai":
        return base + "/chat/completions"
    return base + ("/messages" if base.endswith("/v1") else "/v1/messages")


# ---------------------------------------------------------------------------------------------
# Retry-after


def retry_after_seconds(headers, now=None):
    """Seconds the server asks to wait (retry-after-ms, or retry-after in seconds or as an
    HTTP date), or None when it does not say."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            value = float(milliseconds) / 1000.0
            if math.isfinite(value):
                return max(0.0, value)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# ---------------------------------------------------------------------------------------------
# Server-sent events


class MalformedStream(WorkerError):
    def __init__(self, url, line, why):
        super().__init__("the stream from %s has a malformed line %s: %s" % (url, quote(line), why), retryable=False)


class EventStream:
    """Server-sent events from lines: `feed` returns the (event, data) pairs a line completes."""

    def __init__(self, url):
        self.url = url
        self.event = None
        self.data = []

    def feed(self, raw):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedStream(self.url, raw, "not UTF-8")
        if line.endswith("\n"):
            line = line[:-1]
        if line.endswith("\r"):
            line = line[:-1]
        if line == "":
            return self.finish()
        if line.startswith(":"):
            return []  # a comment: servers send them to keep the connection alive
        field, colon, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data" and colon:
            self.data.append(value)
        elif field == "event" and colon:
            self.event = value
        elif field in ("id", "retry") and colon:
            pass
        elif field == "error" and colon:
            # Some local servers report a failure in an `error:` field.
            raise WorkerError("%s reported an error in its stream: %s" % (self.url, quote(value)), retryable=False)
        else:
            raise MalformedStream(self.url, line, "not a server-sent event field")
        return []

    def finish(self):
        if not self.data:
            self.event = None
            return []
        pair = (self.event or "message", "\n".join(self.data))
        self.event, self.data = None, []
        return [pair]


def parse_event_json(url, event, data):
    try:
        value = json.loads(data)
    except ValueError as error:
        raise MalformedStream(url, ("event: %s " % event if event != "message" else "") + "data: " + data, "not JSON (%s)" % error)
    if not isinstance(value, dict):
        raise MalformedStream(url, "data: " + data, "not a JSON object")
    return value


class StreamedAnswer:
    """What a stream has told so far: its text goes to `on_text` as it comes, and its token
    counts to `on_usage(answer)` each time the stream reports them; the model, counts and stop
    reason are kept for the result. `input_tokens` never includes cached tokens: those are in
    `cache_read_tokens` and `cache_write_tokens` (as Anthropic counts; an OpenAI count, which
    includes them, is split)."""

    def __init__(self, url, on_text, on_usage=None):
        self.url = url
        self.on_text = on_text
        self.on_usage = on_usage or (lambda answer: None)
        self.done = False
        self.model = None
        self.input_tokens = None
        self.output_tokens = None
        self.cache_read_tokens = None
        self.cache_write_tokens = None
        self.stop_reason = None

    @property
    def counts(self):
        """The request's token counts so far, or None before the stream has given any."""
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return {"input_tokens": self.input_tokens or 0, "output_tokens": self.output_tokens or 0,
                "cache_read_tokens": self.cache_read_tokens or 0, "cache_write_tokens": self.cache_write_tokens or 0}


class OpenAIAnswer(StreamedAnswer):
    """The chat-completions stream: `data: {chunk}` events, then `data: [DONE]`."""

    @property
    def complete(self):
        # [DONE] is the end; a server that closes after the finish_reason chunk is let off.
        return self.done or self.stop_reason is not None

    def handle(self, event, data):
        if data.strip() == "[DONE]":
            self.done = True
            return
        chunk = parse_event_json(self.url, event, data)
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            raise WorkerError("%s reported an error mid-stream: %s" % (self.url, quote(str(message))), retryable=False)
        if isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            prompt = _count(usage.get("prompt_tokens"))
            details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
            cached = _count(details.get("cached_tokens"))
            if prompt is not None:
                if cached is not None:
                    self.cache_read_tokens = min(cached, prompt)
                self.input_tokens = prompt - (self.cache_read_tokens or 0)
            completion = _count(usage.get("completion_tokens"))
            if completion is not None:
                self.output_tokens = completion
            if prompt is not None or completion is not None:
                self.on_usage(self)
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str) and delta["content"]:
                self.on_text(delta["content"])
            if choice.get("finish_reason"):
                self.stop_reason = choice["finish_reason"]


class AnthropicAnswer(StreamedAnswer):
    """The Messages stream: message_start, content_block_* (text_delta), message_delta
    (stop_reason, cumulative usage), message_stop; ping and error events between them."""

    SERVER_ERRORS = {"api_error", "timeout_error"}

    @property
    def complete(self):
        return self.done

    def handle(self, event, data):
        value = parse_event_json(self.url, event, data)
        kind = value.get("type") if isinstance(value.get("type"), str) else event
        if kind == "message_start":
            message = value.get("message") if isinstance(value.get("message"), dict) else {}
            if isinstance(message.get("model"), str):
                self.model = message["model"]
            self._usage(message.get("usage"))
        elif kind == "content_block_delta":
            delta = value.get("delta") if isinstance(value.get("delta"), dict) else {}
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
                self.on_text(delta["text"])
        elif kind == "message_delta":
            delta = value.get("delta") if isinstance(value.get("delta"), dict) else {}
            if delta.get("stop_reason"):
                self.stop_reason = delta["stop_reason"]
            self._usage(value.get("usage"))
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            error = value.get("error") if isinstance(value.get("error"), dict) else {}
            error_type = error.get("type", "error")
            rate_limit = error_type in RATE_LIMIT_ERROR_TYPES
            raise StreamFailure("%s sent %s mid-stream: %s" % (self.url, error_type, quote(str(error.get("message", "")))),
                                retryable=rate_limit or error_type in self.SERVER_ERRORS, rate_limit=rate_limit)
        # ping, content_block_start/stop and event types added later: nothing to do.

    def _usage(self, usage):
        if not isinstance(usage, dict):
            return
        # Every count is a running total for the request (message_delta repeats them), so the
        # last one wins; input_tokens excludes the cache, as the API counts it.
        seen = False
        for name, field in (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
                            ("cache_read_tokens", "cache_read_input_tokens"), ("cache_write_tokens", "cache_creation_input_tokens")):
            value = _count(usage.get(field))
            if value is not None:
                setattr(self, name, value)
                seen = True
        if seen:
            self.on_usage(self)


def _count(value):
    """A token count from the API: a whole number of 0 or more, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class StreamFailure(WorkerError):
    """The server reported an error inside a stream it had started."""

    def __init__(self, message, retryable=False, rate_limit=False):
        super().__init__(message, retryable=retryable)
        self.rate_limit = rate_limit


class UsageMeter:
    """The task's token usage over all its requests (failed ones too: money spent is spent),
    sent to drover as `usage` frames of running totals whenever a stream reports new counts."""

    FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")

    def __init__(self, task, options, model):
        self.task = task
        self.model = model
        self.prices = None
        if options.price_input is not None:
            self.prices = {
                "input_tokens": options.price_input, "output_tokens": options.price_output,
                "cache_read_tokens": options.price_input if options.price_cache_read is None else options.price_cache_read,
                "cache_write_tokens": options.price_input if options.price_cache_write is None else options.price_cache_write,
            }
        self.finished = dict.fromkeys(self.FIELDS, 0)
        self.current = None
        self.reported = False
        self.last_frame = None

    def update(self, answer):
        """A stream reported counts for its request (running totals for that request)."""
        self.current = answer.counts
        if answer.model:
            self.model = answer.model
        self.reported = True
        self.send()

    def end_request(self):
        """The request is over (answered, failed or cut): its counts join the finished ones."""
        if self.current:
            for name in self.FIELDS:
                self.finished[name] += self.current[name]
        self.current = None

    def totals(self):
        totals = dict(self.finished)
        for name in self.FIELDS:
            totals[name] += (self.current or {}).get(name, 0)
        return totals

    def cost(self, totals):
        if self.prices is None:
            return None
        dollars = sum(totals[name] * self.prices[name] for name in self.FIELDS) / TOKENS_PER_PRICE
        return round(dollars, 10)

    def send(self):
        totals = self.totals()
        figures = dict(totals, cost_usd=self.cost(totals), model=self.model)
        if figures != self.last_frame:
            self.last_frame = figures
            self.task.usage(**figures)

    def summary(self):
        """The totals for the result's data (None figures when the API reported no usage)."""
        if not self.reported:
            return {"input_tokens": None, "output_tokens": None, "total_tokens": None}
        totals = self.totals()
        summary = {"input_tokens": totals["input_tokens"], "output_tokens": totals["output_tokens"],
                   "total_tokens": totals["input_tokens"] + totals["output_tokens"]}
        if totals["cache_read_tokens"] or totals["cache_write_tokens"]:
            summary["cache_read_tokens"] = totals["cache_read_tokens"]
            summary["cache_write_tokens"] = totals["cache_write_tokens"]
        cost = self.cost(totals)
        if cost is not None:
            summary["cost_usd"] = cost
        return summary


# ---------------------------------------------------------------------------------------------
# Coalescing deltas into message frames


class Coalescer:
    """Collects streamed text and sends it as few `message` frames: at a paragraph break, after
    `interval` seconds, or past `max_chars`. The frames' texts joined give the text exactly."""

    def __init__(self, send, interval, max_chars=8000):
        self.send = send
        self.interval = interval
        self.max_chars = max_chars
        self.pending = ""
        self.last_flush = time.monotonic()

    def add(self, text):
        self.pending += text
        if len(self.pending) >= self.max_chars:
            self.flush()
            return
        cut = self.pending.rfind("\n\n")
        if cut >= 0:
            ready, self.pending = self.pending[:cut + 2], self.pending[cut + 2:]
            self._send(ready)
        else:
            self.tick()

    def tick(self):
        if self.pending and time.monotonic() - self.last_flush >= self.interval:
            self.flush()

    def flush(self):
        if self.pending:
            text, self.pending = self.pending, ""
            self._send(text)

    def _send(self, text):
        if text:
            self.send(text)
        self.last_flush = time.monotonic()


# ---------------------------------------------------------------------------------------------
# The client


class Answer:
    def __init__(self, text, model, stop_reason, requests):
        self.text = text
        self.model = model
        self.stop_reason = stop_reason
        self.requests = requests


class ModelClient:
    def __init__(self, options, api_key, model, task, meter=None):
        self.options = options
        self.api_key = api_key
        self.model = model
        self.task = task
        self.meter = meter or UsageMeter(task, options, model)
        self.url = endpoint(options)
        parts = urlsplit(self.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.path = parts.path + ("?" + parts.query if parts.query else "")
        self.connection = None
        task.on_cancel(self._interrupt)

    def _interrupt(self):
        """Cancel: shut the socket down, which ends a read blocked on it at once."""
        connection = self.connection
        sock = getattr(connection, "sock", None) if connection else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def request_body(self, messages):
        options = self.options
        if options.api == "openai":
            chat = ([{"role": "system", "content": options.system}] if options.system else []) + messages
            body = {"model": self.model, "messages": chat, "stream": True}
            if not options.no_usage:
                body["stream_options"] = {"include_usage": True}
        else:
            body = {"model": self.model, "messages": messages, "stream": True, "max_tokens": options.max_tokens}
            if options.system:
                body["system"] = options.system
        if options.max_tokens is not None:
            body["max_tokens"] = options.max_tokens
        if options.temperature is not None:
            body["temperature"] = options.temperature
        return json.dumps(body).encode("utf-8")

    def headers(self):
        headers = {"content-type": "application/json", "accept": "text/event-stream", "user-agent": "drover-model-api/" + VERSION}
        if self.options.api == "openai":
            if self.api_key:
                headers["authorization"] = "Bearer " + self.api_key
        else:
            headers["anthropic-version"] = self.options.anthropic_version
            if self.api_key:
                headers["x-api-key"] = self.api_key
        return headers

    def answer(self, messages):
        """Streams one answer to `messages`; returns an Answer. A rate limit is reported to
        drover and retried only --max-retries times (default 0); other transient failures
        --max-server-retries times. Then a retryable WorkerError ends the attempt."""
        body = self.request_body(messages)
        options = self.options
        requests = 0
        failures = {True: 0, False: 0}  # by "is a rate limit"
        while True:
            requests += 1
            self.task.check()
            try:
                return self._attempt(body, requests)
            except _Retry as retry:
                if retry.rate_limit:
                    self.task.rate_limited(retry_after=retry.wait, message=retry.reason)
                failures[retry.rate_limit] += 1
                allowed = options.max_retries if retry.rate_limit else options.max_server_retries
                if failures[retry.rate_limit] > allowed:
                    raise WorkerError(retry.reason + (" after %d requests" % requests if requests > 1 else ""), retryable=True)
                retry_number = failures[retry.rate_limit]
                wait = retry.wait if retry.wait is not None else min(2.0 ** (retry_number - 1), 30.0)
                wait = min(wait, options.max_retry_wait)
                left = self.task.time_left()
                if left is not None and wait >= left - 1.0:
                    raise WorkerError("%s; the task's deadline comes before the retry would (in %.1f s)" % (retry.reason, wait), retryable=True)
                flag = "--max-retries" if retry.rate_limit else "--max-server-retries"
                self.task.log("%s; retrying in %.1f s (retry %d of %d, %s)" % (retry.reason, wait, retry_number, allowed, flag), level="warn")
                self._pause(wait)
            finally:
                self.meter.end_request()
                self._close()

    def _pause(self, seconds):
        """Waits before a retry. The server did answer, so heartbeats say the worker is alive."""
        deadline = time.monotonic() + seconds
        while True:
            self.task.heartbeat()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self.task.wait(min(remaining, RETRY_HEARTBEAT_SECONDS)):
                raise Cancelled(self.task.cancel_reason or "cancelled")

    def _close(self):
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()

    def _attempt(self, body, attempt):
        options = self.options
        if self.https:
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=options.connect_timeout, context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=options.connect_timeout)
        self.connection = connection
        try:
            connection.connect()
        except OSError as error:
            self.task.check()
            raise WorkerError("cannot reach %s: %s" % (self.url, describe(error)), retryable=True)
        # From here on each read waits at most read_timeout (a stalled server ends the wait).
        connection.sock.settimeout(options.read_timeout)
        try:
            connection.request("POST", self.path, body=body, headers=self.headers())
            response = connection.getresponse()
        except socket.timeout:
            raise WorkerError("no answer from %s within %g s (--read-timeout)" % (self.url, options.read_timeout), retryable=True)
        except (OSError, http.client.HTTPException) as error:
            self.task.check()
            raise WorkerError("the request to %s failed: %s" % (self.url, describe(error)), retryable=True)
        if response.status != 200:
            self._refuse(response)
        return self._stream(response, attempt)

    def _refuse(self, response):
        """A non-200 answer: a rate limit (429, 529, an overloaded or rate-limit error type), a
        retry (408, 409, other 5xx), else an error quoting the server."""
        try:
            text = response.read(MAX_ERROR_BODY_BYTES).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            text = ""
        message = text
        error_type = None
        try:
            parsed = json.loads(text)
            error = parsed.get("error") if isinstance(parsed, dict) else None
            if isinstance(error, dict) and error.get("message"):
                message = str(error["message"])
            elif isinstance(error, str):
                message = error
            if isinstance(error, dict) and isinstance(error.get("type"), str):
                error_type = error["type"]
        except ValueError:
            pass
        status = ("%d %s" % (response.status, response.reason)).strip()
        reason = "HTTP %s from %s: %s" % (status, self.url, quote(message))
        wait = retry_after_seconds(response.headers)
        if response.status in RATE_LIMIT_STATUSES or (error_type in RATE_LIMIT_ERROR_TYPES and response.status >= 400):
            raise _Retry(reason, wait, rate_limit=True)
        if response.status in SERVER_RETRY_STATUSES or response.status >= 500:
            raise _Retry(reason, wait)
        raise WorkerError(reason, retryable=False)

    def _stream(self, response, attempt):
        options = self.options
        content_type = response.getheader("content-type", "")
        if "text/event-stream" not in content_type:
            sample = response.read(QUOTE_CHARS)
            raise WorkerError("%s answered with %s instead of an event stream: %s" % (self.url, content_type or "no content-type", quote(sample)), retryable=False)
        pieces = []
        coalescer = Coalescer(lambda text: self.task.message(text), options.flush_interval)

        def on_text(text):
            pieces.append(text)
            coalescer.add(text)

        parser = (OpenAIAnswer if options.api == "openai" else AnthropicAnswer)(self.url, on_text, self.meter.update)
        events = EventStream(self.url)
        lines = 0
        try:
            while not parser.done:
                try:
                    line = response.readline(MAX_LINE_BYTES)
                except socket.timeout:
                    raise WorkerError("%s sent nothing for %g s mid-stream (--read-timeout)" % (self.url, options.read_timeout), retryable=True)
                except (OSError, http.client.HTTPException) as error:
                    self.task.check()
                    raise WorkerError("the connection to %s dropped mid-stream after %d lines: %s" % (self.url, lines, describe(error) or "incomplete read"), retryable=True)
                self.task.check()
                if not line:
                    for event, data in events.finish():
                        parser.handle(event, data)
                    break
                lines += 1
                if len(line) >= MAX_LINE_BYTES and not line.endswith(b"\n"):
                    raise MalformedStream(self.url, line, "longer than %d bytes" % MAX_LINE_BYTES)
                if self.task.seconds_since_last_frame >= HEARTBEAT_AFTER_QUIET_SECONDS:
                    self.task.heartbeat()
                for event, data in events.feed(line):
                    parser.handle(event, data)
                coalescer.tick()
        except StreamFailure as failure:
            if failure.retryable and not pieces:
                raise _Retry(failure.message, None, rate_limit=failure.rate_limit)
            if failure.rate_limit:
                # Text already went out, so this request is not retried; the limit is still news.
                self.task.rate_limited(message=failure.message)
            raise
        finally:
            coalescer.flush()
        if not parser.complete:
            raise WorkerError("the connection to %s closed mid-stream after %d lines, before the answer was complete" % (self.url, lines), retryable=True)
        return Answer("".join(pieces), parser.model or self.model, parser.stop_reason, attempt)


class _Retry(Exception):
    """A request worth making again: `wait` is the server's retry-after (seconds) or None;
    `rate_limit` says the provider refused for a rate or capacity limit."""

    def __init__(self, reason, wait, rate_limit=False):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.rate_limit = rate_limit


# ---------------------------------------------------------------------------------------------
# The worker


def chat_session(options, task):
    model = task.model or options.model
    if not model:
        raise WorkerError("no model: give the agent or the task a model, or pass --model", retryable=False)
    api_key = None
    if options.api_key_env:
        api_key = os.environ.get(options.api_key_env)
        if not api_key:
            raise WorkerError("the API key variable %s is not set in this worker's environment; drover passes it only to agents "
                              "that list it in passEnv (or pass --no-api-key for a server without keys)" % options.api_key_env, retryable=False)
    if not task.prompt:
        raise WorkerError("the prompt is empty", retryable=False)

    messages = task.conversation() if task.resume else []
    append_turn(messages, "user", task.prompt)
    client = ModelClient(options, api_key, model, task)
    requests = 0
    turns = 0
    answer = None
    while True:
        answer = client.answer(messages)
        requests += answer.requests
        turns += 1
        append_turn(messages, "assistant", answer.text)
        follow_ups = task.take_prompts()
        if not follow_ups:
            break
        for text in follow_ups:
            # Echoed so that a resumed session knows where this turn began (drover_worker's
            # rebuild_conversation reads it).
            task.message(text, role="user")
            append_turn(messages, "user", text)

    task.result(answer.text, data={
        "api": options.api, "model": answer.model, "usage": client.meter.summary(), "stop_reason": answer.stop_reason,
        "turns": turns, "requests": requests,
    })


def append_turn(messages, role, text):
    if messages and messages[-1]["role"] == role:
        messages[-1] = {"role": role, "content": messages[-1]["content"] + "\n\n" + text}
    else:
        messages.append({"role": role, "content": text})


def main(argv):
    try:
        options = parse_options(argv)
    except UsageError as error:
        message = "drover_model_api.py: %s" % error

        def refuse(task):
            raise WorkerError(message, retryable=False)

        sys.stderr.write(message + "\n")
        drover_worker.run(refuse, worker="drover-model-api", version=VERSION)
        return
    drover_worker.run(lambda task: chat_session(options, task), worker="drover-model-api", version=VERSION)


if __name__ == "__main__":
    main(sys.argv[1:])

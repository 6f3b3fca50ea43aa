#!/usr/bin/env python3
"""A stand-in model API for tests: OpenAI-compatible chat completions (POST /v1/chat/completions)
and the Anthropic Messages API (POST /v1/messages), both streamed as server-sent events.

    fake_model_server.py --key SECRET --log requests.jsonl

Listens on 127.0.0.1 on a free port and prints the port on the first line of stdout. The
request's model picks what happens:

    echo (or any other)  a normal answer that repeats the last user message, in small deltas
    rate-limited         429 with retry-after: 1 the first time a conversation is seen, then echo
    rate-limited-date    the same with retry-after as an HTTP date 2 s ahead
    rate-limited-N       429 with retry-after-ms: 300 the first N times a conversation is seen, then echo;
                         the error message counts: "slow down (request 2, 3 refused in all)"
    overloaded           503 (anthropic: 529) with retry-after: 0 and an overloaded_error, every time
    overloaded-midstream anthropic: message_start, then an overloaded_error event; openai: as overloaded
    server-error         500 with an api_error (no retry-after), every time
    cached               echo, with usage that counts 40 cached prompt tokens (anthropic: 8 more written)
    stall                headers and the first event, then silence (for 30 s at most)
    drop                 a few deltas, then the connection is cut mid-chunk
    malformed            a few deltas, then a line that is not JSON

The key must come as `authorization: Bearer SECRET` (openai) or `x-api-key: SECRET` with an
`anthropic-version` header (anthropic), else 401. Each request is logged as a JSON line.
"""
import argparse
import email.utils
import json
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER_DELAY = 0.004
seen_conversations = {}
log_lock = threading.Lock()


def answer_text(messages):
    last = messages[-1]["content"] if messages else ""
    if isinstance(last, list):
        last = " ".join(part.get("text", "") for part in last if isinstance(part, dict))
    roles = ",".join(m.get("role", "?") for m in messages)
    return "Heard %d messages (%s). You said: %s\n\nThat is my whole answer." % (len(messages), roles, last)


def pieces(text):
    return re.findall(r"\S+\s*|\s+", text)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-model/1"

    def log_message(self, format, *args):
        pass

    # -- helpers ------------------------------------------------------------------------------

    def chunk(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def send_json(self, status, value, headers=()):
        body = json.dumps(value).encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, header in headers:
            self.send_header(name, header)
        self.end_headers()
        self.wfile.write(body)

    def start_stream(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def error_body(self, api, kind, message):
        if api == "anthropic":
            return {"type": "error", "error": {"type": kind, "message": message}}
        return {"error": {"message": message, "type": kind}}

    def cut(self):
        """Drops the connection mid-stream, without the closing chunk."""
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    # -- requests -------------------------------------------------------------------------------

    def do_POST(self):
        if self.path == "/v1/chat/completions":
            api = "openai"
        elif self.path == "/v1/messages":
            api = "anthropic"
        else:
            self.send_json(404, {"error": {"message": "no such endpoint: " + self.path}})
            return
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            self.send_json(400, self.error_body(api, "invalid_request_error", "the body is not JSON"))
            return
        expected = self.server.key
        if api == "openai":
            key_ok = expected is None or self.headers.get("authorization") == "Bearer " + expected
        else:
            key_ok = expected is None or self.headers.get("x-api-key") == expected
        model = body.get("model", "")
        messages = body.get("messages") or []
        with log_lock, open(self.server.log_path, "a") as log:
            log.write(json.dumps({
                "t": time.time(), "api": api, "model": model, "messages": messages, "system": body.get("system"),
                "stream": body.get("stream"), "stream_options": body.get("stream_options"), "max_tokens": body.get("max_tokens"),
                "key_ok": key_ok, "anthropic_version": self.headers.get("anthropic-version"),
            }) + "\n")
        if not key_ok:
            self.send_json(401, self.error_body(api, "authentication_error", "invalid x-api-key" if api == "anthropic" else "Incorrect API key provided"))
            return
        if api == "anthropic" and not self.headers.get("anthropic-version"):
            self.send_json(400, self.error_body(api, "invalid_request_error", "anthropic-version header is required"))
            return
        if body.get("stream") is not True:
            self.send_json(400, self.error_body(api, "invalid_request_error", "this server only streams"))
            return

        conversation = api + "|" + model + "|" + json.dumps(messages[-1:] if messages else [])
        with log_lock:
            seen_conversations[conversation] = seen_conversations.get(conversation, 0) + 1
            first_time = seen_conversations[conversation] == 1
            seen = seen_conversations[conversation]
        if model in ("rate-limited", "rate-limited-date") and first_time:
            retry_after = "1" if model == "rate-limited" else email.utils.formatdate(time.time() + 2, usegmt=True)
            self.send_json(429, self.error_body(api, "rate_limit_error", "slow down"), headers=[("retry-after", retry_after)])
            return
        refusals = re.fullmatch(r"rate-limited-(\d+)", model)
        if refusals and seen <= int(refusals.group(1)):
            message = "slow down (request %d, %s refused in all)" % (seen, refusals.group(1))
            self.send_json(429, self.error_body(api, "rate_limit_error", message), headers=[("retry-after-ms", "300")])
            return
        if model == "overloaded" or (model == "overloaded-midstream" and api == "openai"):
            status = 529 if api == "anthropic" else 503
            self.send_json(status, self.error_body(api, "overloaded_error", "Overloaded"), headers=[("retry-after", "0")])
            return
        if model == "server-error":
            self.send_json(500, self.error_body(api, "api_error", "Internal server error"))
            return

        self.start_stream()
        text = answer_text(messages)
        if api == "openai":
            self.stream_openai(model, messages, text, body)
        else:
            self.stream_anthropic(model, messages, text)

    def scripted_end(self, model, send_bad_line):
        """For stall, drop and malformed: what comes after the first deltas. True if handled."""
        if model == "stall":
            deadline = time.time() + 30
            while time.time() < deadline and not self.server.stopping:
                time.sleep(0.05)
            self.close_connection = True
            return True
        if model == "drop":
            self.cut()
            return True
        if model == "malformed":
            send_bad_line()
            self.end_chunks()
            return True
        return False

    def stream_openai(self, model, messages, text, body):
        def event(value):
            self.chunk("data: " + (value if isinstance(value, str) else json.dumps(value)) + "\n\n")

        def delta(content, finish=None):
            return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "delta": content, "finish_reason": finish}]}

        event(delta({"role": "assistant", "content": ""}))
        parts = pieces(text)
        if model in ("stall", "drop", "malformed"):
            for part in parts[:3]:
                event(delta({"content": part}))
            if self.scripted_end(model, lambda: self.chunk("data: {this is not json\n\n")):
                return
        for part in parts:
            time.sleep(ANSWER_DELAY)
            event(delta({"content": part}))
        event(delta({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in messages), "completion_tokens": len(parts)}
            if model == "cached":
                usage["prompt_tokens"] += 40
                usage["prompt_tokens_details"] = {"cached_tokens": 40}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            event({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model, "choices": [], "usage": usage})
        event("[DONE]")
        self.end_chunks()

    def stream_anthropic(self, model, messages, text):
        def event(name, value):
            self.chunk("event: %s\ndata: %s\n\n" % (name, json.dumps(value)))

        input_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        usage = {"input_tokens": input_tokens, "output_tokens": 1}
        if model == "cached":
            usage.update(cache_read_input_tokens=40, cache_creation_input_tokens=8)
        event("message_start", {"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": model,
            "stop_reason": None, "stop_sequence": None, "usage": usage}})
        if model == "overloaded-midstream":
            event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            self.end_chunks()
            return
        event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        event("ping", {"type": "ping"})
        parts = pieces(text)
        if model in ("stall", "drop", "malformed"):
            for part in parts[:3]:
                event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}})
            if self.scripted_end(model, lambda: self.chunk("event: content_block_delta\ndata: {this is not json\n\n")):
                return
        for part in parts:
            time.sleep(ANSWER_DELAY)
            event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}})
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": len(parts)}})
        event("message_stop", {"type": "message_stop"})
        self.end_chunks()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--key", help="the API key requests must carry (none: any)")
    parser.add_argument("--log", required=True, help="JSON-lines file of the requests received")
    options = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.key = options.key
    server.log_path = options.log
    server.stopping = False
    open(options.log, "a").close()
    sys.stdout.write("%d\n" % server.server_address[1])
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.stopping = True


if __name__ == "__main__":
    main()

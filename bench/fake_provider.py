#!/usr/bin/env python3
"""A provider with a real rate limit, for bench/ratelimit.sh: an OpenAI-compatible chat
completions endpoint (POST /v1/chat/completions, streamed) that admits at most --capacity
requests at once and answers the rest 429 with `retry-after: 1`, as an account's limit does.
Each admitted request streams its answer over --seconds. GET /stats gives the counts.

    fake_provider.py --capacity 4 --seconds 1

Listens on 127.0.0.1 on a free port and prints the port on the first line of stdout.
Bounded: it exits by itself after --lifetime seconds.
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
stats = {"admitted": 0, "refused": 0, "in_flight": 0, "most_in_flight": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def send_json(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            self.send_json(200, dict(stats))

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        with lock:
            admitted = stats["in_flight"] < self.server.capacity
            if admitted:
                stats["admitted"] += 1
                stats["in_flight"] += 1
                stats["most_in_flight"] = max(stats["most_in_flight"], stats["in_flight"])
            else:
                stats["refused"] += 1
        if not admitted:
            return self.send_json(429, {"error": {"message": "rate limit reached", "type": "rate_limit"}}, [("retry-after", "1")])
        try:
            self.stream(request)
        finally:
            with lock:
                stats["in_flight"] -= 1

    def stream(self, request):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        words = ["The", " answer", " is", " forty", "-two", "."]
        step = self.server.seconds / len(words)

        def event(payload):
            data = ("data: " + json.dumps(payload) + "\n\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        for word in words:
            time.sleep(step)
            event({"choices": [{"index": 0, "delta": {"content": word}}], "model": request.get("model", "m")})
        event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        event({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}})
        data = b"data: [DONE]\n\n"
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        self.wfile.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--lifetime", type=float, default=600)
    options = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.capacity = options.capacity
    server.seconds = options.seconds
    print(server.server_address[1], flush=True)
    threading.Timer(options.lifetime, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()

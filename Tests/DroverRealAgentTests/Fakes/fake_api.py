"""What the tests' fake APIs share: the script of rules, the request log, JSON answers and
the server on a free port of 127.0.0.1 (its port printed on the first line of stdout)."""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Script:
    """The rules of `--script`, each used at most `times` times, and the request log of `--log`."""

    def __init__(self):
        parser = argparse.ArgumentParser()
        parser.add_argument("--script", required=True)
        parser.add_argument("--log", required=True)
        self.args = parser.parse_args()
        with open(self.args.script) as f:
            self.rules = json.load(f)
        self.used = [0] * len(self.rules)
        self.lock = threading.Lock()
        self.counter = 0

    def next_number(self):
        """A number for ids, new each call."""
        with self.lock:
            self.counter += 1
            return self.counter

    def choose(self, text):
        """The first rule whose `match` occurs in `text` and is not used up, with its index."""
        with self.lock:
            for index, rule in enumerate(self.rules):
                if rule.get("match", "") in text and ("times" not in rule or self.used[index] < rule["times"]):
                    self.used[index] += 1
                    return index, rule
        return None, {"text": "(no rule matched)"}

    def log(self, handler, index, body, header_names, **extra):
        """One JSON line for the request: path, rule, time, model, the headers named, body."""
        entry = {"path": handler.path, "rule": index, "time": time.time(), "model": body.get("model"),
                 "stream": body.get("stream", False)}
        entry.update(extra)
        entry["headers"] = {k: handler.headers.get(k) for k in header_names if handler.headers.get(k)}
        entry["body"] = body
        with self.lock, open(self.args.log, "a") as log:
            log.write(json.dumps(entry) + "\n")


class JSONHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def read_json(self):
        """The request's body as JSON ({} when it is not)."""
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def send_json(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        self.wfile.write(data)


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)

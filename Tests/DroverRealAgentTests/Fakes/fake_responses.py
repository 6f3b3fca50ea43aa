#!/usr/bin/env python3
"""A scriptable fake of OpenAI's Responses API on 127.0.0.1, for the real Codex app-server.

    fake_responses.py --script SCRIPT.json --log REQUESTS.jsonl

Prints its port on the first line of stdout, then serves `POST /v1/responses` as a server-sent
event stream (the only call Codex makes with `wire_api = "responses"`). Every request is logged
as one JSON line: the path, the headers that matter, the model and the whole body.

The script is a list of rules; a request takes the first rule whose `match` (a substring,
default "") occurs in the text of the request's last input item (the prompt, or the output of
the command the model asked for, as "function_call_output <output>") and whose `times`
(default: unlimited) is not used up. A rule's reply is one of:

    {"text": "..."}                               an assistant message
    {"exec": "echo hi", "text": "optional"}       a function_call of Codex's `exec_command`
    {"exec": "...", "exec_args": {...}}           with more of its arguments (e.g.
                                                  "sandbox_permissions": "require_escalated")
    {"status": 429}                               an error answer (any status), in OpenAI's
                                                  error shape
    {"text": "...", "delay_ms": 300}              each streamed event that much apart
    {"text": "...", "stall_ms": 5000}             the stream stops for that long mid-message

`"usage": {"input_tokens": N, "output_tokens": M, "cached_tokens": C}` sets the figures
reported (default 10/5/0). `"headers": {...}` adds response headers (e.g. Codex's
`x-codex-primary-used-percent` rate-limit headers). When no rule matches, the answer is a
plain "(no rule matched)" text, so a test sees it.
"""

import json
import time

from fake_api import JSONHandler, Script, serve

script = Script()


def item_text(item):
    """The text of one input item: a message's text parts, or a command's output."""
    if item.get("type") == "function_call_output":
        output = item.get("output")
        if not isinstance(output, str):
            output = json.dumps(output)
        return "function_call_output " + output
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def last_text(body):
    # Codex sends its instructions and environment as earlier messages: the last item is the
    # prompt, or the output of the command the model ran.
    items = [i for i in body.get("input") or [] if isinstance(i, dict)]
    for item in reversed(items):
        if item.get("type") == "function_call_output" or item.get("role") == "user":
            return item_text(item)
    return ""


class Handler(JSONHandler):
    def do_POST(self):
        body = self.read_json()
        index, rule = (None, None)
        if self.path.split("?")[0] == "/v1/responses":
            index, rule = script.choose(last_text(body))
        script.log(self, index, body, ("authorization", "session_id", "originator"), last_input=last_text(body))
        if rule is None:
            return self.send_json(404, {"error": {"type": "invalid_request_error", "message": "no such endpoint " + self.path}})
        if "status" in rule:
            kind = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(rule["status"], "server_error" if rule["status"] >= 500 else "invalid_request_error")
            message = rule.get("message", "fake error %d" % rule["status"])
            return self.send_json(rule["status"], {"error": {"type": kind, "code": kind, "message": message}}, rule.get("headers"))
        self.reply(body, rule)

    def reply(self, body, rule):
        usage = {"input_tokens": 10, "output_tokens": 5, "cached_tokens": 0}
        usage.update(rule.get("usage", {}))
        n = script.next_number()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        for key, value in (rule.get("headers") or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        delay = rule.get("delay_ms", 0) / 1000.0

        def event(payload):
            self.wfile.write(("event: %s\ndata: %s\n\n" % (payload["type"], json.dumps(payload))).encode())
            self.wfile.flush()
            if delay:
                time.sleep(delay)

        response_id = "resp_fake%04d" % n
        try:
            event({"type": "response.created", "response": {"id": response_id}})
            index = 0
            if rule.get("text"):
                text = rule["text"]
                item_id = "msg_fake%04d" % n
                item = {"type": "message", "role": "assistant", "id": item_id, "content": []}
                event({"type": "response.output_item.added", "output_index": index, "item": item})
                half = len(text) // 2
                event({"type": "response.output_text.delta", "item_id": item_id, "output_index": index, "content_index": 0, "delta": text[:half]})
                if rule.get("stall_ms"):
                    time.sleep(rule["stall_ms"] / 1000.0)
                event({"type": "response.output_text.delta", "item_id": item_id, "output_index": index, "content_index": 0, "delta": text[half:]})
                done = dict(item, content=[{"type": "output_text", "text": text, "annotations": []}])
                event({"type": "response.output_item.done", "output_index": index, "item": done})
                index += 1
            if "exec" in rule:
                call = {"type": "function_call", "id": "fc_fake%04d" % n, "call_id": "call_fake%04d" % n, "name": "exec_command",
                        "arguments": json.dumps(dict(rule.get("exec_args", {}), cmd=rule["exec"]))}
                event({"type": "response.output_item.added", "output_index": index, "item": call})
                event({"type": "response.output_item.done", "output_index": index, "item": call})
            event({"type": "response.completed", "response": {"id": response_id, "usage": {
                "input_tokens": usage["input_tokens"], "input_tokens_details": {"cached_tokens": usage["cached_tokens"]},
                "output_tokens": usage["output_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage["input_tokens"] + usage["output_tokens"]}}})
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


serve(Handler)

#!/usr/bin/env python3
"""A scriptable fake of Anthropic's Messages API on 127.0.0.1, for the real Claude Code CLI.

    fake_anthropic.py --script SCRIPT.json --log REQUESTS.jsonl

Prints its port on the first line of stdout, then serves `POST /v1/messages` (any query
string: the CLI sends `?beta=true`), streaming or not. Every request is logged as one JSON
line: the path, the headers the CLI sends that matter, the model and the whole body.

The script is a list of rules; a request takes the first rule whose `match` (a substring,
default "") occurs in the text of the request's last user message and whose `times` (default:
unlimited) is not used up. Only the last user message counts, so "the prompt" and "a tool result
came back" are told apart. A rule's reply is one of:

    {"text": "..."}                               an assistant message, stop_reason end_turn
    {"tool_use": {"name": "Bash", "input": {...}}, "text": "optional text before it"}
    {"status": 429, "retry_after": 1}             an error answer (any status), with a body
                                                  in Anthropic's error shape
    {"text": "...", "delay_ms": 300}              each streamed event that much apart
    {"text": "...", "stall_ms": 5000}             the stream stops for that long mid-message

`"usage": {"input_tokens": N, "output_tokens": M}` sets the figures reported (default 10/5);
`"headers": {...}` adds response headers (such as `anthropic-ratelimit-unified-status`).
When no rule matches, the answer is a plain "(no rule matched)" text, so a test sees it.
"""

import json
import time

from fake_api import JSONHandler, Script, serve

script = Script()


def message_text(message):
    """All the text of one message: strings, text blocks, tool results, tool inputs."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            parts.append("tool_result ")
            inner = block.get("content")
            if isinstance(inner, str):
                parts.append(inner)
            else:
                parts.extend(b.get("text", "") for b in inner or [] if isinstance(b, dict))
        else:
            parts.append(json.dumps(block))
    return "\n".join(parts)


def choose(body):
    # Claude Code puts its environment in a trailing "system" message: the last user
    # message is the prompt, or the tool results of the model's last call.
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    number = script.next_number()
    index, rule = script.choose(message_text(users[-1]) if users else "")
    return index, rule, number


class Handler(JSONHandler):
    def do_POST(self):
        body = self.read_json()
        index, rule, self.number = (None, None, 0)
        if self.path.split("?")[0] == "/v1/messages":
            index, rule, self.number = choose(body)
        script.log(self, index, body, ("x-api-key", "anthropic-version", "anthropic-beta", "x-claude-code-session-id"))
        if rule is None:
            return self.send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "no such endpoint " + self.path}})
        if "status" in rule:
            headers = dict(rule.get("headers", {}))
            if "retry_after" in rule:
                headers["retry-after"] = str(rule["retry_after"])
            kind = {429: "rate_limit_error", 529: "overloaded_error", 401: "authentication_error"}.get(rule["status"], "api_error")
            return self.send_json(rule["status"], {"type": "error", "error": {"type": kind, "message": rule.get("message", "fake error %d" % rule["status"])}}, headers)
        self.reply(body, rule)

    def blocks(self, rule):
        blocks = []
        if rule.get("text"):
            blocks.append({"type": "text", "text": rule["text"]})
        if "tool_use" in rule:
            tool_id = "toolu_fake%04d" % script.next_number()
            blocks.append({"type": "tool_use", "id": tool_id, "name": rule["tool_use"]["name"], "input": rule["tool_use"].get("input", {})})
        return blocks

    def reply(self, body, rule):
        usage = {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
        usage.update(rule.get("usage", {}))
        stop = "tool_use" if "tool_use" in rule else "end_turn"
        message = {"id": "msg_fake%04d" % self.number, "type": "message", "role": "assistant", "model": body.get("model", "fake"),
                   "stop_reason": None, "stop_sequence": None}
        blocks = self.blocks(rule)
        if not body.get("stream"):
            message.update(content=blocks, stop_reason=stop, usage=usage)
            return self.send_json(200, message)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        for key, value in rule.get("headers", {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        delay = rule.get("delay_ms", 0) / 1000.0

        def event(kind, payload):
            self.wfile.write(("event: %s\ndata: %s\n\n" % (kind, json.dumps(payload))).encode())
            self.wfile.flush()
            if delay:
                time.sleep(delay)

        try:
            event("message_start", {"type": "message_start", "message": dict(message, content=[], usage=dict(usage, output_tokens=1))})
            for index, block in enumerate(blocks):
                if block["type"] == "text":
                    event("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
                    text = block["text"]
                    half = len(text) // 2
                    event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text[:half]}})
                    if rule.get("stall_ms"):
                        time.sleep(rule["stall_ms"] / 1000.0)
                    event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text[half:]}})
                else:
                    start = dict(block, input={})
                    event("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
                    event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
                event("content_block_stop", {"type": "content_block_stop", "index": index})
            event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": usage["output_tokens"]}})
            event("message_stop", {"type": "message_stop"})
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


serve(Handler)

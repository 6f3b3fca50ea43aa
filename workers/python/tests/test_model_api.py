"""Unit tests of drover_model_api: retry-after, the event-stream parser, coalescing, and whole
sessions (follow-up prompts, resumes) against fake_model_server.py over real sockets."""
import email.utils
import json
import os
import sys
import tempfile
import time
import unittest

from worker_driver import WORKERS, Driver, FakeServer, drover_worker, start_frame

import drover_model_api as api  # noqa: E402  (worker_driver put its folder on sys.path)

WORKER = os.path.join(WORKERS, "drover_model_api.py")


class RetryAfterTests(unittest.TestCase):
    def test_seconds_dates_and_nonsense(self):
        now = 1_700_000_000.0
        self.assertEqual(api.retry_after_seconds({"retry-after": "3"}, now), 3.0)
        self.assertEqual(api.retry_after_seconds({"retry-after": "1.5"}, now), 1.5)
        self.assertEqual(api.retry_after_seconds({"retry-after": "-4"}, now), 0.0)
        self.assertEqual(api.retry_after_seconds({"retry-after": email.utils.formatdate(now + 7, usegmt=True)}, now), 7.0)
        self.assertEqual(api.retry_after_seconds({"retry-after": email.utils.formatdate(now - 60, usegmt=True)}, now), 0.0)
        self.assertEqual(api.retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}, now), 0.25)
        for nonsense in ("soon", "nan", "inf", ""):
            self.assertIsNone(api.retry_after_seconds({"retry-after": nonsense}, now), nonsense)
        self.assertIsNone(api.retry_after_seconds({}, now))


class EventStreamTests(unittest.TestCase):
    def test_events_comments_and_multi_line_data(self):
        stream = api.EventStream("http://x")
        got = []
        for line in [b": keep-alive\n", b"event: ping\r\n", b"data: {}\n", b"\n", b"data: a\n", b"data:b\n", b"id: 7\n", b"\n"]:
            got += stream.feed(line)
        self.assertEqual(got, [("ping", "{}"), ("message", "a\nb")])

    def test_a_line_that_is_no_event_field_is_quoted_and_cut(self):
        stream = api.EventStream("http://x/v1/chat/completions")
        with self.assertRaises(drover_worker.WorkerError) as caught:
            stream.feed(b"<html>" + b"x" * 500 + b"\n")
        message = caught.exception.message
        self.assertIn("the stream from http://x/v1/chat/completions has a malformed line '<html>xxx", message)
        self.assertIn("...'", message)
        self.assertLess(len(message), 320)
        self.assertFalse(caught.exception.retryable)

    def test_openai_chunks_and_usage(self):
        texts = []
        answer = api.OpenAIAnswer("http://x", texts.append)
        answer.handle("message", json.dumps({"model": "m-1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}))
        answer.handle("message", json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        answer.handle("message", json.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}))
        self.assertFalse(answer.done)
        answer.handle("message", "[DONE]")
        self.assertEqual((texts, answer.model, answer.input_tokens, answer.output_tokens, answer.stop_reason, answer.done),
                         (["Hi"], "m-1", 5, 2, "stop", True))

    def test_anthropic_events_usage_and_errors(self):
        texts = []
        answer = api.AnthropicAnswer("http://x", texts.append)
        answer.handle("message_start", json.dumps({"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 9, "output_tokens": 1}}}))
        answer.handle("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Yo"}}))
        answer.handle("message_delta", json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}))
        answer.handle("message_stop", json.dumps({"type": "message_stop"}))
        self.assertEqual((texts, answer.model, answer.input_tokens, answer.output_tokens, answer.stop_reason, answer.done),
                         (["Yo"], "claude-x", 9, 4, "end_turn", True))
        with self.assertRaises(api.StreamFailure) as caught:
            answer.handle("error", json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
        self.assertTrue(caught.exception.retryable)
        self.assertIn("overloaded_error mid-stream: 'Overloaded'", caught.exception.message)


class CoalescerTests(unittest.TestCase):
    def test_paragraphs_and_time_decide_the_frames_and_nothing_is_lost(self):
        sent = []
        coalescer = api.Coalescer(sent.append, interval=0.2)
        pieces = ["One ", "two.", "\n", "\nThree ", "four"]
        for piece in pieces:
            coalescer.add(piece)
        self.assertEqual(sent, ["One two.\n\n"])
        time.sleep(0.25)
        coalescer.add(" five")
        self.assertEqual(sent, ["One two.\n\n", "Three four five"])
        coalescer.add(" six")
        coalescer.flush()
        self.assertEqual("".join(sent), "".join(pieces) + " five six")


class SessionTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = FakeServer(key="k-123")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def run_worker(self, dialect, start, prompts=(), extra=()):
        env = dict(os.environ, TEST_MODEL_KEY="k-123")
        worker = Driver([sys.executable, WORKER, "--api", dialect, "--base-url", self.server.url(dialect), "--api-key-env", "TEST_MODEL_KEY"] + list(extra), env=env)
        worker.send(start)
        for text in prompts:
            worker.send({"type": "prompt", "text": text})
        frames = worker.until("result", timeout=10)
        status, stderr = worker.finish()
        self.assertEqual(status, 0, stderr)
        return frames

    def test_follow_up_prompts_become_turns_of_the_same_task(self):
        for dialect in ("openai", "anthropic"):
            with self.subTest(api=dialect):
                frames = self.run_worker(dialect, start_frame("first " + dialect), prompts=["second " + dialect])
                result = frames[-1]
                self.assertEqual(result["data"]["turns"], 2)
                self.assertEqual(result["text"], "Heard 3 messages (user,assistant,user). You said: second %s\n\nThat is my whole answer." % dialect)
                self.assertIn({"type": "message", "role": "user", "text": "second " + dialect}, frames)
                request = [r for r in self.server.requests() if r["api"] == dialect][-1]
                self.assertEqual([m["role"] for m in request["messages"]], ["user", "assistant", "user"])
                self.assertTrue(request["messages"][1]["content"].startswith("Heard 1 messages (user). You said: first"))

    def test_a_resumed_session_sends_the_earlier_turns(self):
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as transcript:
            for frame in [
                {"dir": "out", "type": "start", "task_id": "bg_1", "prompt": "earlier question"},
                {"dir": "in", "type": "message", "role": "assistant", "text": "earlier "},
                {"dir": "in", "type": "message", "role": "assistant", "text": "answer"},
                {"dir": "in", "type": "result", "text": "earlier answer"},
                {"dir": "out", "type": "start", "task_id": "bg_0000000a", "prompt": "now this"},
            ]:
                transcript.write(json.dumps(dict(frame, t=1)) + "\n")
        try:
            start = start_frame("now this", resume=True, transcript_path=transcript.name)
            frames = self.run_worker("anthropic", start, extra=["--system", "be brief", "--max-tokens", "99"])
        finally:
            os.unlink(transcript.name)
        self.assertIn("Heard 3 messages (user,assistant,user). You said: now this", frames[-1]["text"])
        request = [r for r in self.server.requests() if r["api"] == "anthropic"][-1]
        self.assertEqual(request["messages"], [
            {"role": "user", "content": "earlier question"},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": "now this"},
        ])
        self.assertEqual((request["system"], request["max_tokens"], request["anthropic_version"], request["key_ok"]), ("be brief", 99, "2023-06-01", True))

    def test_bad_options_end_the_task_with_their_message(self):
        cases = [
            (["--read-timeout", "0"], "drover_model_api.py: --read-timeout must be more than 0"),
            (["--no-api-key", "--api-key-env", "KEY"], "drover_model_api.py: argument --api-key-env: not allowed with argument --no-api-key"),
            (["--base-url", "ftp://x"], "drover_model_api.py: --base-url 'ftp://x' is not an http(s) URL"),
        ]
        for options, expected in cases:
            with self.subTest(options=options):
                worker = Driver([sys.executable, WORKER, "--api", "openai"] + options)
                worker.send(start_frame())
                error = worker.until("error")[-1]
                status, stderr = worker.finish()
                self.assertEqual(error, {"type": "error", "message": expected, "retryable": False})
                self.assertEqual(status, 1)


if __name__ == "__main__":
    unittest.main()

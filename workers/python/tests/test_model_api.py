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
        reports = []
        answer = api.OpenAIAnswer("http://x", texts.append, lambda answer: reports.append(answer.counts))
        answer.handle("message", json.dumps({"model": "m-1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}))
        answer.handle("message", json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        answer.handle("message", json.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}))
        self.assertFalse(answer.done)
        answer.handle("message", "[DONE]")
        self.assertEqual((texts, answer.model, answer.input_tokens, answer.output_tokens, answer.stop_reason, answer.done),
                         (["Hi"], "m-1", 5, 2, "stop", True))
        self.assertEqual(reports, [{"input_tokens": 5, "output_tokens": 2, "cache_read_tokens": 0, "cache_write_tokens": 0}])

    def test_openai_cached_prompt_tokens_are_split_off_the_input(self):
        reports = []
        answer = api.OpenAIAnswer("http://x", lambda text: None, lambda answer: reports.append(answer.counts))
        answer.handle("message", json.dumps({"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 20,
                                                                       "prompt_tokens_details": {"cached_tokens": 896}}}))
        self.assertEqual(reports, [{"input_tokens": 104, "output_tokens": 20, "cache_read_tokens": 896, "cache_write_tokens": 0}])

    def test_anthropic_events_usage_and_errors(self):
        texts = []
        reports = []
        answer = api.AnthropicAnswer("http://x", texts.append, lambda answer: reports.append(answer.counts))
        answer.handle("message_start", json.dumps({"type": "message_start", "message": {"model": "claude-x", "usage": {
            "input_tokens": 9, "output_tokens": 1, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 12}}}))
        answer.handle("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Yo"}}))
        answer.handle("message_delta", json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}))
        answer.handle("message_stop", json.dumps({"type": "message_stop"}))
        self.assertEqual((texts, answer.model, answer.input_tokens, answer.output_tokens, answer.stop_reason, answer.done),
                         (["Yo"], "claude-x", 9, 4, "end_turn", True))
        # Usage as it arrives: message_start, then message_delta's running total.
        self.assertEqual(reports, [{"input_tokens": 9, "output_tokens": 1, "cache_read_tokens": 300, "cache_write_tokens": 12},
                                   {"input_tokens": 9, "output_tokens": 4, "cache_read_tokens": 300, "cache_write_tokens": 12}])
        for kind, rate_limit, retryable in [("overloaded_error", True, True), ("rate_limit_error", True, True),
                                            ("api_error", False, True), ("invalid_request_error", False, False)]:
            with self.subTest(kind=kind):
                with self.assertRaises(api.StreamFailure) as caught:
                    answer.handle("error", json.dumps({"type": "error", "error": {"type": kind, "message": "Overloaded"}}))
                self.assertEqual((caught.exception.rate_limit, caught.exception.retryable), (rate_limit, retryable))
                self.assertIn("%s mid-stream: 'Overloaded'" % kind, caught.exception.message)


class UsageMeterTests(unittest.TestCase):
    class Task:
        def __init__(self):
            self.frames = []

        def usage(self, **figures):
            self.frames.append(figures)

    def options(self, *argv):
        return api.parse_options(["--api", "anthropic"] + list(argv))

    def answer(self, **counts):
        answer = api.StreamedAnswer("http://x", None)
        answer.model = "m-1"
        for name, value in counts.items():
            setattr(answer, name, value)
        return answer

    def test_totals_run_over_requests_and_are_priced_per_million(self):
        task = self.Task()
        meter = api.UsageMeter(task, self.options("--price-input", "3", "--price-output", "15", "--price-cache-read", "0.3"), "m-0")
        meter.update(self.answer(input_tokens=1000, output_tokens=1, cache_read_tokens=20000, cache_write_tokens=100))
        meter.update(self.answer(input_tokens=1000, output_tokens=1, cache_read_tokens=20000, cache_write_tokens=100))
        meter.update(self.answer(input_tokens=1000, output_tokens=500, cache_read_tokens=20000, cache_write_tokens=100))
        meter.end_request()
        meter.update(self.answer(input_tokens=10, output_tokens=5))
        # The repeated figures went out once; the second request adds to the first.
        self.assertEqual([(f["input_tokens"], f["output_tokens"]) for f in task.frames], [(1000, 1), (1000, 500), (1010, 505)])
        # 1010 * 3 + 505 * 15 + 20000 * 0.3 + 100 * 3 (cache writes at the input price), per million
        self.assertEqual(task.frames[-1], {"input_tokens": 1010, "output_tokens": 505, "cache_read_tokens": 20000, "cache_write_tokens": 100,
                                           "cost_usd": 0.016905, "model": "m-1"})
        self.assertEqual(meter.summary(), {"input_tokens": 1010, "output_tokens": 505, "total_tokens": 1515,
                                           "cache_read_tokens": 20000, "cache_write_tokens": 100, "cost_usd": 0.016905})

    def test_no_prices_no_cost_and_no_usage_no_figures(self):
        task = self.Task()
        meter = api.UsageMeter(task, self.options(), "m-0")
        self.assertEqual(meter.summary(), {"input_tokens": None, "output_tokens": None, "total_tokens": None})
        meter.update(self.answer(input_tokens=7, output_tokens=3))
        self.assertEqual(task.frames, [{"input_tokens": 7, "output_tokens": 3, "cache_read_tokens": 0, "cache_write_tokens": 0,
                                        "cost_usd": None, "model": "m-1"}])
        self.assertEqual(meter.summary(), {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10})

    def test_prices_must_come_as_a_pair_and_not_be_negative(self):
        for argv, message in [
            (["--price-input", "3"], "--price-input and --price-output go together"),
            (["--price-cache-read", "1"], "--price-cache-read and --price-cache-write need --price-input and --price-output"),
            (["--price-input", "-1", "--price-output", "2"], "--price-input must be a number of 0 or more"),
            (["--price-input", "nan", "--price-output", "2"], "--price-input must be a number of 0 or more"),
            (["--max-server-retries", "-1"], "must not be negative"),
        ]:
            with self.subTest(argv=argv):
                with self.assertRaises(api.UsageError) as caught:
                    self.options(*argv)
                self.assertIn(message, str(caught.exception))


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

    def run_until_end(self, dialect, start, extra=()):
        """Every frame up to the result or error, and the exit status."""
        env = dict(os.environ, TEST_MODEL_KEY="k-123")
        worker = Driver([sys.executable, WORKER, "--api", dialect, "--base-url", self.server.url(dialect), "--api-key-env", "TEST_MODEL_KEY"] + list(extra), env=env)
        worker.send(start)
        frames = []
        while not frames or frames[-1]["type"] not in ("result", "error"):
            frame = worker.next(timeout=15)
            if frame is None:
                break
            frames.append(frame)
        status, stderr = worker.finish()
        return frames, status, stderr

    def requests_for(self, prompt):
        return [r for r in self.server.requests() if r["messages"] and r["messages"][-1]["content"] == prompt]

    def test_a_rate_limit_is_reported_and_by_default_ends_the_attempt(self):
        for dialect, model, status in [("openai", "rate-limited-1", "429 Too Many Requests"), ("anthropic", "rate-limited-1", "429 Too Many Requests"),
                                       ("openai", "overloaded", "503 Service Unavailable"), ("anthropic", "overloaded", "529"),
                                       ("anthropic", "overloaded-midstream", None)]:
            with self.subTest(api=dialect, model=model):
                prompt = "limit me %s %s" % (dialect, model)
                frames, code, stderr = self.run_until_end(dialect, start_frame(prompt, model=model, attempt=2))
                self.assertEqual(code, 1, stderr)
                kinds = [frame["type"] for frame in frames]
                self.assertEqual(kinds[-2:], ["rate_limit", "error"], frames)
                limit, error = frames[-2], frames[-1]
                if model == "rate-limited-1":
                    self.assertEqual(limit["retry_after_ms"], 300)
                elif model == "overloaded":
                    self.assertEqual(limit["retry_after_ms"], 0)
                else:
                    self.assertNotIn("retry_after_ms", limit, "a stream error carries no retry-after")
                self.assertEqual(limit["scope"], "provider")
                self.assertTrue(error["retryable"])
                self.assertEqual(limit["message"], error["message"], "both say what the server said")
                if status:
                    self.assertTrue(error["message"].startswith("HTTP %s from %s" % (status, self.server.url(dialect))), error["message"])
                else:
                    self.assertIn("sent overloaded_error mid-stream: 'Overloaded'", error["message"])
                self.assertEqual(len(self.requests_for(prompt)), 1, "not retried by the worker")

    def test_with_max_retries_the_worker_rides_rate_limits_out_itself(self):
        prompt = "patience please"
        began = time.monotonic()
        frames, code, stderr = self.run_until_end("anthropic", start_frame(prompt, model="rate-limited-2"), extra=["--max-retries", "3"])
        self.assertEqual(code, 0, stderr)
        limits = [frame for frame in frames if frame["type"] == "rate_limit"]
        self.assertEqual([limit["message"] for limit in limits], [
            "HTTP 429 Too Many Requests from %s/v1/messages: 'slow down (request %d, 2 refused in all)'" % (self.server.url("anthropic"), n) for n in (1, 2)])
        self.assertTrue(all(limit["retry_after_ms"] == 300 for limit in limits))
        self.assertEqual(frames[-1]["type"], "result")
        self.assertEqual(frames[-1]["data"]["requests"], 3)
        self.assertEqual(len(self.requests_for(prompt)), 3)
        self.assertGreaterEqual(time.monotonic() - began, 0.6, "waited the server's 300 ms twice")
        logs = [frame["text"] for frame in frames if frame["type"] == "log"]
        self.assertEqual(len(logs), 2)
        self.assertIn("retrying in 0.3 s (retry 1 of 3, --max-retries)", logs[0])

    def test_server_errors_are_retried_a_little_without_a_rate_limit(self):
        prompt = "a failing server"
        frames, code, stderr = self.run_until_end("openai", start_frame(prompt, model="server-error"), extra=["--max-retry-wait", "0.05"])
        self.assertEqual(code, 1, stderr)
        self.assertNotIn("rate_limit", [frame["type"] for frame in frames])
        self.assertEqual(frames[-1], {"type": "error", "retryable": True, "message":
                                      "HTTP 500 Internal Server Error from %s/chat/completions: 'Internal server error' after 3 requests" % self.server.url("openai")})
        self.assertEqual(len(self.requests_for(prompt)), 3, "--max-server-retries defaults to 2")

    def test_usage_frames_run_over_the_turns_and_carry_the_cost(self):
        for dialect in ("openai", "anthropic"):
            with self.subTest(api=dialect):
                frames = self.run_worker(dialect, start_frame("usage one " + dialect, model="cached"), prompts=["usage two " + dialect],
                                         extra=["--price-input", "2", "--price-output", "10", "--price-cache-read", "0.5"])
                usage = [frame for frame in frames if frame["type"] == "usage"]
                result = frames[-1]
                self.assertEqual(result["data"]["turns"], 2)
                final = usage[-1]
                summary = result["data"]["usage"]
                self.assertEqual((final["input_tokens"], final["output_tokens"], final["cache_read_tokens"], final["cost_usd"]),
                                 (summary["input_tokens"], summary["output_tokens"], summary["cache_read_tokens"], summary["cost_usd"]))
                self.assertEqual(final["cache_read_tokens"], 80, "40 cached tokens a request, two requests")
                self.assertEqual(final["cache_write_tokens"], 16 if dialect == "anthropic" else 0)
                self.assertEqual(final["model"], "cached")
                # The running totals only grow, and the second turn's come on top of the first's.
                totals = [(frame["input_tokens"], frame["output_tokens"]) for frame in usage]
                self.assertEqual(totals, sorted(totals))
                self.assertGreaterEqual(len(usage), 2 if dialect == "openai" else 4, "message_start and message_delta each report")
                price = (final["input_tokens"] * 2 + final["output_tokens"] * 10 + 80 * 0.5 + final["cache_write_tokens"] * 2) / 1e6
                self.assertAlmostEqual(final["cost_usd"], price, places=9)
                # Usage frames come before the result, where drover's budgets see them.
                self.assertLess(frames.index(usage[-1]), len(frames) - 1)

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

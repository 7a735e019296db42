"""The SDK against a stand-in reporter socket that records every message."""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import unittest
import warnings
from typing import Any, Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import testbay  # noqa: E402
from testbay import reporter  # noqa: E402


class FakeConsole:
    """Answers ok to everything, except a second set_result (as the console does)."""

    def __init__(self, path: str) -> None:
        self.messages: List[Dict[str, Any]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        f = conn.makefile("rwb")
        for line in f:
            m = json.loads(line)
            self.messages.append(m)
            if m["type"] == "prompt":
                text = m.get("choices", ["typed"])[0]
                timed_out = m.get("timeout_s") == 0.01
                f.write(json.dumps({"ok": True, "answer": {"text": "" if timed_out else text, "by": "op", "at_ms": 1, "timed_out": timed_out}}).encode() + b"\n")
                f.flush()
                continue
            twice = m["type"] == "set_result" and sum(
                x["type"] == "set_result" for x in self.messages
            ) > 1
            reply = (
                {"ok": False, "error": {"code": "result_twice", "message": "the result is already set"}}
                if twice
                else {"ok": True}
            )
            f.write(json.dumps(reply).encode() + b"\n")
            f.flush()


class ReporterTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        path = os.path.join(self.dir, "r.sock")
        self.console = FakeConsole(path)
        os.environ[reporter.SOCKET_ENV] = path
        os.environ[reporter.TOKEN_ENV] = "tok"
        reporter._client = reporter._Client()

    def tearDown(self) -> None:
        if reporter._client._sock is not None:
            reporter._client._file.close()
            reporter._client._sock.close()
        self.console.sock.close()
        del os.environ[reporter.SOCKET_ENV]
        del os.environ[reporter.TOKEN_ENV]

    def types(self) -> List[str]:
        return [m["type"] for m in self.console.messages]

    def test_sections_steps_and_measurements(self) -> None:
        with testbay.section("boot", description="power on"):
            with testbay.step("wait"):
                testbay.detail("prompt seen")
            testbay.measure("boot_time", 12.5, units="s", high=30)
        testbay.set_result("Passed", "all good")
        m = self.console.messages
        self.assertEqual(m[0], {"type": "hello", "token": "tok", "pid": os.getpid()})
        self.assertEqual(
            self.types(),
            ["hello", "section_start", "section_start", "detail", "section_stop",
             "measurement", "section_stop", "set_result"],
        )
        self.assertEqual(m[1], {"type": "section_start", "name": "boot", "description": "power on"})
        self.assertEqual(m[5], {"type": "measurement", "name": "boot_time", "value": 12.5, "units": "s", "high": 30})
        self.assertEqual(m[6]["result"], "Passed")

    def test_an_exception_fails_its_section_and_goes_on(self) -> None:
        with self.assertRaises(ValueError):
            with testbay.section("flash"):
                raise ValueError("checksum mismatch")
        stop = self.console.messages[-1]
        self.assertEqual(stop["type"], "section_stop")
        self.assertEqual(stop["result"], "Failed")
        self.assertEqual(stop["message"], "ValueError: checksum mismatch")

    def test_a_refusal_raises_with_the_consoles_message(self) -> None:
        testbay.set_result("Passed")
        with self.assertRaises(testbay.ReporterError) as e:
            testbay.set_result("Failed")
        self.assertEqual(e.exception.code, "result_twice")

    def test_prompt_returns_the_answer_or_empty_on_timeout(self) -> None:
        self.assertEqual(testbay.prompt("Plug in HDMI", choices=["done", "fail"]), "done")
        self.assertEqual(self.console.messages[-1],
                         {"type": "prompt", "message": "Plug in HDMI", "choices": ["done", "fail"]})
        self.assertEqual(testbay.prompt("Serial?", pattern="SN[0-9]+", timeout=0.01), "")

    def test_a_forked_child_says_hello_on_its_own_connection(self) -> None:
        testbay.detail("parent")
        pid = os.fork()
        if pid == 0:
            try:
                testbay.detail("child")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        hellos = [m for m in self.console.messages if m["type"] == "hello"]
        self.assertEqual(len(hellos), 2)
        self.assertNotEqual(hellos[0]["pid"], hellos[1]["pid"])


class OutsideTestbayTest(unittest.TestCase):
    def test_calls_do_nothing_after_one_warning(self) -> None:
        os.environ.pop(reporter.SOCKET_ENV, None)
        reporter._client = reporter._Client()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with testbay.section("s"):
                testbay.measure("x", 1.0)
            testbay.set_result("Passed")
        self.assertEqual(len(w), 1)
        self.assertIn("not inside a Testbay task", str(w[0].message))


if __name__ == "__main__":
    unittest.main()

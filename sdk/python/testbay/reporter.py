"""The reporter client: one connection per process to ``TESTBAY_REPORTER``.

The protocol (``schemas/reporter.schema.json``): newline-delimited JSON, one reply per
message. A connection first says hello with ``TESTBAY_REPORTER_TOKEN``. A forked child
opens its own connection on its first call; the console puts its sections under the
section its parent opened last.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import warnings
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

SOCKET_ENV = "TESTBAY_REPORTER"
TOKEN_ENV = "TESTBAY_REPORTER_TOKEN"


class ReporterError(Exception):
    """The console refused a message; ``code`` is its stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class _Client:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: Optional[int] = None
        self._sock: Optional[socket.socket] = None
        self._file: Any = None
        self._warned = False

    def _connect(self, path: str, token: str) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        self._sock = sock
        self._file = sock.makefile("rwb")
        self._pid = os.getpid()
        self._exchange({"type": "hello", "token": token, "pid": os.getpid()})

    def _exchange(self, message: Dict[str, Any]) -> Dict[str, Any]:
        line = json.dumps({k: v for k, v in message.items() if v is not None})
        self._file.write(line.encode() + b"\n")
        self._file.flush()
        answer = self._file.readline()
        if not answer:
            raise ReporterError("closed", "the console closed the reporter connection")
        reply: Dict[str, Any] = json.loads(answer)
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise ReporterError(str(err.get("code", "error")), str(err.get("message", answer)))
        return reply

    def send(self, message: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Sends one message; ``None`` outside Testbay."""
        path = os.environ.get(SOCKET_ENV)
        token = os.environ.get(TOKEN_ENV)
        if not path or not token:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    "testbay: not inside a Testbay task (TESTBAY_REPORTER is not set); "
                    "nothing is reported",
                    stacklevel=3,
                )
            return None
        with self._lock:
            if self._pid != os.getpid():
                # A fresh process (or a forked child): its own connection.
                self._sock = None
                self._connect(path, token)
            return self._exchange(message)


_client = _Client()


class Section:
    """An open section; set ``result`` and ``message`` to close it with them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.result: Optional[str] = None
        self.message: Optional[str] = None


@contextmanager
def section(name: str, description: Optional[str] = None) -> Iterator[Section]:
    """A section (pyATS testcase) around the ``with`` body, nested in the one open.

    It passes unless the body raises (the section fails with the exception's message and
    the exception goes on) or sets ``result`` on the yielded :class:`Section`.
    """
    s = Section(name)
    _client.send({"type": "section_start", "name": name, "description": description})
    try:
        yield s
    except BaseException as e:
        _client.send(
            {
                "type": "section_stop",
                "name": name,
                "result": s.result if s.result not in (None, "Passed") else "Failed",
                "message": s.message or f"{type(e).__name__}: {e}",
            }
        )
        raise
    _client.send(
        {"type": "section_stop", "name": name, "result": s.result or "Passed", "message": s.message}
    )


@contextmanager
def step(name: str) -> Iterator[Section]:
    """A step: a section inside the one open."""
    with section(name) as s:
        yield s


def detail(text: str) -> None:
    """A line of text for the open section (or the task)."""
    _client.send({"type": "detail", "text": text})


def extra(key: str, value: Any) -> None:
    """A key and any JSON value for the open section (or the task)."""
    _client.send({"type": "extra", "key": key, "value": value})


def measure(
    name: str,
    value: float,
    units: Optional[str] = None,
    low: Optional[float] = None,
    high: Optional[float] = None,
    comparison: Optional[str] = None,
) -> None:
    """A measurement judged against its limits (comparison: EQ, NE, GT, GE, LT, LE, GELE,
    GTLT, GELT, GTLE or LOG; from the limits when absent)."""
    _client.send(
        {
            "type": "measurement",
            "name": name,
            "value": value,
            "units": units,
            "low": low,
            "high": high,
            "comparison": comparison,
        }
    )


def attach(path: str) -> None:
    """Attach a file from the artifacts folder (``TESTBAY_ARTIFACTS``): absolute, relative
    to the working folder when it exists there, else relative to the artifacts folder."""
    if not os.path.isabs(path) and os.path.exists(path):
        path = os.path.abspath(path)
    _client.send({"type": "attach", "path": path})


def set_result(result: str, message: Optional[str] = None) -> None:
    """The task's result (once; a result file, when written, wins)."""
    _client.send({"type": "set_result", "result": result, "message": message})


def prompt(
    message: str,
    choices: Optional[List[str]] = None,
    pattern: Optional[str] = None,
    timeout: Optional[float] = None,
) -> str:
    """Ask the operator and wait for the answer: one of ``choices`` when given, else free
    text matching ``pattern`` (a regular expression, whole text) when given. After
    ``timeout`` seconds (default: a day) without an answer, returns ``""`` (as it does
    outside Testbay, where nobody can answer)."""
    reply = _client.send(
        {
            "type": "prompt",
            "message": message,
            "choices": list(choices) if choices else None,
            "pattern": pattern,
            "timeout_s": timeout,
        }
    )
    if reply is None:
        return ""
    answer = reply.get("answer") or {}
    if answer.get("timed_out"):
        return ""
    return str(answer.get("text", ""))

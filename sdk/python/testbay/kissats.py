"""Run a kissats task module unchanged: ``python3 -m testbay.kissats MODULE``.

The module is found in the task's folder (the working folder of a phase). The phase
(``TESTBAY_PHASE``: setup, main or teardown) picks what is called, with the run's global
params as kissats passes them (``global_params`` of ``TESTBAY_PARAMS``, plus ``dut``,
``ats`` and ``reservations`` when the pack's params do not name them):

- setup: ``task_setup(global_params)``; an exception fails the phase (``Errored``).
- main: ``task_main(global_params)``; its return value (kissats' Task Return: ``result``,
  ``metadata`` as a dict or a message, ``multi_result``) becomes the result file. An
  exception makes the task ``Errored`` with the exception's message.
- teardown: ``task_teardown(global_params)``.

A module without the phase's function does nothing in that phase.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import Any, Dict, List, Optional


def _global_params() -> Dict[str, Any]:
    path = os.environ.get("TESTBAY_PARAMS")
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    params: Dict[str, Any] = dict(doc.get("global_params") or {})
    for key in ("dut", "ats", "reservations", "lane", "group"):
        if key not in params and doc.get(key) is not None:
            params[key] = doc[key]
    return params


def _metadata(m: Any) -> Dict[str, Any]:
    if isinstance(m, dict):
        out = dict(m)
        out["message"] = str(out.get("message", ""))
        return out
    return {"message": "" if m is None else str(m)}


def task_return(ret: Any) -> Dict[str, Any]:
    """A kissats Task Return as Testbay's result file takes it."""
    if not isinstance(ret, dict) or "result" not in ret:
        raise ValueError(f"task_main must return a dict with a 'result' key, not {ret!r}")
    out: Dict[str, Any] = {"result": str(ret["result"]), "metadata": _metadata(ret.get("metadata"))}
    multi: Optional[List[Any]] = ret.get("multi_result")
    if multi:
        out["multi_result"] = [
            {
                "name": str(s["name"]),
                "description": str(s.get("description") or ""),
                "result": str(s["result"]),
                "metadata": _metadata(s.get("metadata")),
            }
            for s in multi
        ]
    return out


def _write_result(doc: Dict[str, Any]) -> None:
    path = os.environ.get("TESTBAY_RESULT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
    else:
        print(json.dumps(doc))


def run(module_name: str, phase: str) -> int:
    """Runs one phase of a kissats module; the exit status."""
    if module_name.endswith(".py"):
        module_name = module_name[:-3]
    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    params = _global_params()
    name = {"setup": "task_setup", "main": "task_main", "teardown": "task_teardown"}.get(phase)
    if name is None:
        print(f"testbay.kissats: unknown phase {phase!r}", file=sys.stderr)
        return 2
    func = getattr(module, name, None)
    if func is None:
        return 0
    try:
        ret = func(params)
        if phase == "main":
            _write_result(task_return(ret))
    except Exception as e:  # the task's own failure, reported as its result
        traceback.print_exc()
        _write_result({"result": "Errored", "metadata": {"message": f"{name}: {type(e).__name__}: {e}"}})
        return 1
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m testbay.kissats MODULE", file=sys.stderr)
        return 2
    return run(args[0], os.environ.get("TESTBAY_PHASE", "main"))


if __name__ == "__main__":
    sys.exit(main())

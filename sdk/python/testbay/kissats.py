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

``python3 -m testbay.kissats --import DIR OUT`` writes a pack in OUT from the task modules
in DIR (``testbay packs import-kissats`` calls it): each module's ``get_params`` gives its
task file, the modules are copied beside them and one group, ``tests``, runs them all.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
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


# kissats task params Testbay's task file takes as they are.
_SAME_KEYS = (
    "always_teardown", "stop_suite_on_fail", "exclusive_resources", "shared_resources",
    "max_resource_retry", "max_resource_wait", "process_safe", "valid_ats", "valid_duts",
    "req_param_keys", "optional_param_keys", "prereq_tasks", "priority", "extra_metadata",
)


def _task_name(params: Dict[str, Any], module: str) -> str:
    """kissats names a task by ``params['name']``, often ``__file__``: its file's stem."""
    name = str(params.get("name") or module)
    name = os.path.basename(name)
    return name[:-3] if name.endswith(".py") else name


def task_file(module_name: str, module: Any) -> Dict[str, Any]:
    """The Testbay task file of a kissats module, from its ``get_params``."""
    get = getattr(module, "get_params", None)
    params: Dict[str, Any] = dict(get({}) if get else {})
    argv = ["python3", "-m", "testbay.kissats", module_name]
    task: Dict[str, Any] = {"name": _task_name(params, module_name)}
    desc = params.get("description") or module.__doc__ or ""
    if desc:
        task["description"] = " ".join(str(desc).split())
    task["run"] = argv
    if hasattr(module, "task_setup"):
        task["setup"] = argv
    if hasattr(module, "task_teardown"):
        task["teardown"] = argv
    for key in _SAME_KEYS:
        v = params.get(key)
        if v not in (None, "", [], {}, 0, False) or (key == "priority" and v is not None):
            task[key] = v
    est = params.get("est_test_time") or params.get("est_task_time")
    if est:
        task["est_task_time"] = est
    if params.get("resource_config"):
        task["resource_configs"] = params["resource_config"]
    return task


def import_pack(src: str, out: str) -> List[str]:
    """Writes a pack in ``out`` from the kissats task modules in ``src``; the task names."""
    src = os.path.abspath(src)
    modules = sorted(
        f[:-3] for f in os.listdir(src) if f.endswith(".py") and not f.startswith("_")
    )
    sys.path.insert(0, src)
    tasks_dir = os.path.join(out, "tasks")
    os.makedirs(tasks_dir, exist_ok=True)
    names: List[str] = []
    for m in modules:
        module = importlib.import_module(m)
        if not hasattr(module, "task_main"):
            continue
        task = task_file(m, module)
        names.append(task["name"])
        shutil.copyfile(os.path.join(src, m + ".py"), os.path.join(tasks_dir, m + ".py"))
        # JSON is YAML: the task file needs no YAML writer.
        with open(os.path.join(tasks_dir, m + ".yaml"), "w", encoding="utf-8") as f:
            json.dump(task, f, indent=2)
            f.write("\n")
    if not names:
        raise ValueError(f"no kissats task module (a .py file with task_main) in {src}")
    pack_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.path.basename(src.rstrip("/"))).strip("-")
    pack = {
        "name": pack_name or "kissats",
        "version": "1.0.0",
        "description": f"kissats task modules imported from {src}",
        "groups": {"tests": {"tests": names}},
    }
    with open(os.path.join(out, "pack.yaml"), "w", encoding="utf-8") as f:
        json.dump(pack, f, indent=2)
        f.write("\n")
    return names


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 3 and args[0] == "--import":
        try:
            names = import_pack(args[1], args[2])
        except (ValueError, OSError, ImportError) as e:
            print(f"testbay.kissats: {e}", file=sys.stderr)
            return 1
        print(json.dumps(names))
        return 0
    if len(args) != 1:
        print("usage: python3 -m testbay.kissats MODULE | --import DIR OUT", file=sys.stderr)
        return 2
    return run(args[0], os.environ.get("TESTBAY_PHASE", "main"))


if __name__ == "__main__":
    sys.exit(main())

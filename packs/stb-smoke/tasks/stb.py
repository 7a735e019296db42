"""Helpers shared by the stb-smoke demo tasks: read the params file, write the result.

Testbay gives every task process TESTBAY_PARAMS (a JSON file), TESTBAY_RESULT (where to
write the result) and TESTBAY_ARTIFACTS (a folder for attachments).
"""

import json
import os
import sys


def load_params():
    path = os.environ.get("TESTBAY_PARAMS")
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def param(data, key, default=None):
    """A global parameter of the run (`global_params` in the params file)."""
    scoped = data.get("global_params")
    if isinstance(scoped, dict) and key in scoped:
        return scoped[key]
    return default


def dut_name(data):
    dut = data.get("dut")
    if isinstance(dut, dict):
        return dut.get("name", "unknown DUT")
    return dut or "unknown DUT"


def measurement(name, value, units=None, low=None, high=None):
    """A measurement for a result's `measurements` list; Testbay judges it against its
    limits (both: low <= value <= high), and one out of limits fails its result."""
    m = {"name": name, "value": value}
    for key, v in (("units", units), ("low", low), ("high", high)):
        if v is not None:
            m[key] = v
    return m


def write_result(result, message="", multi_result=None, measurements=None, **metadata):
    path = os.environ.get("TESTBAY_RESULT")
    body = {"result": result, "metadata": dict(metadata, message=message)}
    if multi_result is not None:
        body["multi_result"] = multi_result
    if measurements:
        body["measurements"] = measurements
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(body, f)
    else:
        json.dump(body, sys.stdout)
        print()


def artifact(name, text):
    folder = os.environ.get("TESTBAY_ARTIFACTS")
    if not folder:
        return
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        f.write(text)


def say(*parts):
    print(*parts, flush=True)

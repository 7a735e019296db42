"""Helpers shared by the net-regression demo tasks (params in, result out)."""

import json
import os


def load_params():
    path = os.environ.get("TESTBAY_PARAMS")
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def param(data, key, default=None):
    scoped = data.get("global_params")
    if isinstance(scoped, dict) and key in scoped:
        return scoped[key]
    return default


def write_result(result, message="", multi_result=None, **metadata):
    body = {"result": result, "metadata": dict(metadata, message=message)}
    if multi_result is not None:
        body["multi_result"] = multi_result
    path = os.environ.get("TESTBAY_RESULT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(body, f)
    else:
        print(json.dumps(body))

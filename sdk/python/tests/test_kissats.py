"""The kissats runner on a sample module, as a task phase runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest

SDK = os.path.join(os.path.dirname(__file__), "..")
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def run_phase(phase: str, global_params: dict, module: str = "sample_task"):
    d = tempfile.mkdtemp()
    params = os.path.join(d, "params.json")
    result = os.path.join(d, "result.json")
    with open(params, "w") as f:
        json.dump({"global_params": global_params, "dut": {"name": "stb-01"}}, f)
    env = dict(os.environ, PYTHONPATH=SDK, TESTBAY_PARAMS=params, TESTBAY_RESULT=result,
               TESTBAY_PHASE=phase)
    p = subprocess.run([sys.executable, "-m", "testbay.kissats", module], cwd=FIXTURES,
                       env=env, capture_output=True, text=True)
    doc = None
    if os.path.exists(result):
        with open(result) as f:
            doc = json.load(f)
    return p.returncode, doc, p.stderr


class KissatsRunnerTest(unittest.TestCase):
    def test_main_turns_the_task_return_into_the_result_file(self) -> None:
        code, doc, err = run_phase("main", {"channels": [101, 102]})
        self.assertEqual(code, 0, err)
        self.assertEqual(doc["result"], "Passed")
        self.assertEqual(doc["metadata"], {"message": "2 channels"})
        self.assertEqual(
            doc["multi_result"][1],
            {"name": "channel_102", "description": "lock", "result": "Passed",
             "metadata": {"message": "locked"}},
        )

    def test_a_failing_setup_is_errored_with_its_message(self) -> None:
        code, doc, _ = run_phase("setup", {})
        self.assertEqual(code, 1)
        self.assertEqual(doc["result"], "Errored")
        self.assertIn("task_setup: RuntimeError: no channels to check", doc["metadata"]["message"])

    def test_teardown_runs_and_writes_nothing(self) -> None:
        code, doc, err = run_phase("teardown", {"channels": [1]})
        self.assertEqual((code, doc), (0, None), err)

    def test_the_module_may_be_named_with_py(self) -> None:
        code, doc, err = run_phase("main", {"channels": [7]}, "sample_task.py")
        self.assertEqual(code, 0, err)
        self.assertEqual(len(doc["multi_result"]), 1)

    def test_import_writes_a_pack_from_get_params(self) -> None:
        out = tempfile.mkdtemp()
        env = dict(os.environ, PYTHONPATH=SDK)
        p = subprocess.run([sys.executable, "-m", "testbay.kissats", "--import", FIXTURES, out],
                           env=env, capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), ["sample_task"])
        with open(os.path.join(out, "tasks", "sample_task.yaml")) as f:
            task = json.load(f)
        self.assertEqual(task["run"], ["python3", "-m", "testbay.kissats", "sample_task"])
        self.assertEqual(task["setup"], task["run"])
        self.assertEqual(task["req_param_keys"], ["channels"])
        self.assertEqual(task["est_task_time"], 1)
        with open(os.path.join(out, "pack.yaml")) as f:
            pack = json.load(f)
        self.assertEqual(pack["groups"], {"tests": {"tests": ["sample_task"]}})
        self.assertTrue(os.path.exists(os.path.join(out, "tasks", "sample_task.py")))


if __name__ == "__main__":
    unittest.main()

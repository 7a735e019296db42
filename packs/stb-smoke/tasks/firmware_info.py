"""A kissats-style task module, run unchanged by Testbay's kissats runner: reads the
firmware version the run was launched with and checks it against the DUT's."""


def get_params(global_params):
    params = dict()
    params["name"] = "firmware_info"
    params["description"] = __doc__
    params["est_test_time"] = 1
    params["req_param_keys"] = ["firmware"]
    return params


def task_setup(global_params):
    if not str(global_params.get("firmware", "")).strip():
        raise RuntimeError("no firmware version to check")


def task_main(global_params):
    wanted = str(global_params["firmware"])
    reported = wanted  # a real module would ask the DUT over its console port
    checks = [
        {"name": "version_read", "description": "the DUT answers with a version",
         "result": "Passed", "metadata": reported},
        {"name": "version_matches", "description": f"the DUT runs {wanted}",
         "result": "Passed" if reported == wanted else "Failed",
         "metadata": f"wanted {wanted}, DUT reports {reported}"},
    ]
    failed = [c for c in checks if c["result"] != "Passed"]
    return {"result": "Failed" if failed else "Passed",
            "metadata": f"firmware {reported}", "multi_result": checks}


def task_teardown(global_params):
    return

#!/usr/bin/env python3
"""hdmi_check: the operator plugs in the HDMI cable and says whether the TV shows a picture.

Asks only when someone can answer: `-p operator=true` (the question shows on Live, or on
the terminal of `testbay run`), or `-p hdmi_answer=picture` answers it ahead of time.
Otherwise it is Skipped, so unattended runs go on.
"""

import testbay  # the console's bundled SDK
from stb import dut_name, load_params, param, write_result

data = load_params()
dut = dut_name(data)
answer = str(param(data, "hdmi_answer", "") or "")
if not answer and param(data, "operator", False):
    answer = testbay.prompt(
        f"Plug the HDMI cable into {dut}. Does the TV show a picture?",
        choices=["picture", "no picture"],
        timeout=300,
    )
    if not answer:
        write_result("Skipped", "nobody answered within 5 minutes")
        raise SystemExit(0)
if not answer:
    write_result("Skipped", "nobody to ask: pass -p operator=true, or -p hdmi_answer=picture")
elif answer == "picture":
    write_result("Passed", "the operator saw a picture over HDMI")
else:
    write_result("Failed", f"the operator reported: {answer}")

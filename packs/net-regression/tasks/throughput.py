#!/usr/bin/env python3
"""throughput: drive the traffic generator for a few seconds and compare with the target."""

import sys
import time

from net import load_params, param, write_result

proto = sys.argv[1] if len(sys.argv) > 1 else "tcp"
data = load_params()
target = float(param(data, "throughput_target_mbps", 900))
samples = []
for second in range(1, 4):
    time.sleep(0.5)
    rate = (941.0 if proto == "tcp" else 956.0) - second * 2
    samples.append(rate)
    print(f"{proto} t={second}s {rate:.0f} Mb/s", flush=True)
mean = sum(samples) / len(samples)
loss = 0.0 if proto == "tcp" else 0.02
ok = mean >= target
write_result(
    "Passed" if ok else "Failed",
    f"{proto} mean {mean:.0f} Mb/s (target {target:.0f})",
    mean_mbps=round(mean, 1),
    loss_pct=loss,
)

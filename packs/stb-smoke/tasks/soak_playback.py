#!/usr/bin/env python3
"""soak_playback: the slow task; prints a progress line every second."""

import time

from stb import load_params, param, say, write_result

data = load_params()
seconds = float(param(data, "slow_seconds", 8))
start = time.monotonic()
frames = 0
while (elapsed := time.monotonic() - start) < seconds:
    step = min(1.0, seconds - elapsed)
    time.sleep(step)
    frames += int(step * 50)
    pct = min(100, int(100 * (time.monotonic() - start) / seconds)) if seconds else 100
    say(f"playback {pct:3d}%  frames={frames}  freezes=0")
write_result("Passed", f"{seconds:g} s of playback without a freeze", frames=frames)

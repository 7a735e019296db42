#!/usr/bin/env python3
"""link_status: multi_result, one sub-result per interface of `interfaces`."""

import time

from net import load_params, param, write_result

data = load_params()
subs = []
for i, iface in enumerate(param(data, "interfaces", [])):
    time.sleep(0.2)
    speed = 1000 if not iface.startswith("wan") else 100
    print(f"{iface}: up, {speed} Mb/s full duplex", flush=True)
    subs.append({
        "name": iface,
        "description": f"link state of {iface}",
        "result": "Passed",
        "metadata": {"message": f"up at {speed} Mb/s", "speed_mbps": speed},
    })
write_result("Passed", f"{len(subs)} interfaces up", multi_result=subs)

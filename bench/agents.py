#!/usr/bin/env python3
"""Per-task cost of a rack agent against the server's own phases, on loopback.

Starts a lab server (`testbay serve`, users, the demo lab with rack-a marked
`agent: true`) and a `testbay agent` for rack-a, then runs the same pack of N
`true` tasks (process_limit 1; `/bin/true`, found on PATH) on a rack-b DUT (phases on the server, through the
embedded console's own runner) and on a rack-a DUT (phases on the agent, over
loopback), alternately ROUNDS times, and prints the milliseconds per task of each run
(the run's start to its end over N), then the median of each side and their ratio.
Prints figures; asserts nothing. Use release builds for figures.

    TESTBAY_BIN=target/debug/testbay bench/agents.py [N] [ROUNDS]
"""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BIN = os.environ.get("TESTBAY_BIN", os.path.join(REPO, "target/debug/testbay"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 500
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2


def main():
    root = tempfile.mkdtemp(prefix="testbay-agents-bench-")
    data, packs = f"{root}/data", f"{root}/packs"
    os.makedirs(f"{packs}/many/tasks")
    names = [f"t{i}" for i in range(N)]
    with open(f"{packs}/many/pack.yaml", "w") as f:
        f.write("name: many\nversion: '1'\nparams:\n  process_limit: 1\n")
        f.write("groups:\n  g:\n    tests: [" + ", ".join(names) + "]\n")
    for n in names:
        with open(f"{packs}/many/tasks/{n}.yaml", "w") as f:
            f.write(f'name: {n}\nrun: ["true"]\n')
    with open(os.path.join(REPO, "lab/demo-lab.yaml")) as f:
        lab = f.read().replace(
            "    slots: 8\n", "    slots: 8\n    agent: true\n", 1)
    with open(f"{root}/lab.yaml", "w") as f:
        f.write(lab)
    # The per-task cost is measured, not the CPU threshold: a busy machine's agent is
    # never passed over here.
    os.makedirs(data, exist_ok=True)
    with open(f"{data}/settings.yaml", "w") as f:
        f.write("agent_cpu_threshold_pct: 100\n")
    env = dict(os.environ, TESTBAY_DATA_DIR=data, RUST_LOG="warn")

    def token(name, role):
        out = subprocess.run([BIN, "users", "add", name, "--role", role],
                             env=env, capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]

    ops, agent_token = token("ops", "operator"), token("rack-a-pc", "agent")
    server = subprocess.Popen(
        [BIN, "serve", "--bind", "127.0.0.1:0", "--packs", packs, "--lab", f"{root}/lab.yaml"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addr = re.search(r"http://(127\.0\.0\.1:\d+)", server.stdout.readline()).group(1)
    agent = subprocess.Popen(
        [BIN, "agent", "--server", f"http://{addr}", "--token", agent_token,
         "--rack", "rack-a", "--work-dir", f"{root}/work"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def api(body):
        text = json.dumps(body)
        host, port = addr.split(":")
        with socket.create_connection((host, int(port))) as s:
            s.sendall((f"POST /api HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n"
                       f"Authorization: Bearer {ops}\r\nContent-Length: {len(text)}\r\n"
                       f"Connection: close\r\n\r\n{text}").encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return json.loads(out.split(b"\r\n\r\n", 1)[1])

    def one(dut):
        r = api({"cmd": "launch", "pack": "many", "duts": [dut]})
        if "data" not in r:
            sys.exit(f"launch on {dut} refused: {str(r)[:500]}")
        run_id = r["data"]["run_id"]
        while True:
            run = api({"cmd": "get_run", "run_id": run_id})["data"]["run"]
            if run["status"] not in ("queued", "running", "stalled"):
                return (run["finished_ms"] - run["started_ms"]) / N, run["status"]
            time.sleep(0.2)

    try:
        while api({"cmd": "agents"})["data"][:1] == []:
            time.sleep(0.1)
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {N} tasks per run")
        figures = {"server": [], "agent": []}
        for _ in range(ROUNDS):
            for dut, where in (("stb-07", "server"), ("stb-01", "agent")):
                per, status = one(dut)
                figures[where].append(per)
                print(f"  {where:6}: {per:6.2f} ms per task ({status})")
        server_ms, agent_ms = (statistics.median(figures[w]) for w in ("server", "agent"))
        print(f"median: server {server_ms:.2f} ms per task, agent {agent_ms:.2f} ms per task, "
              f"agent/server {agent_ms / server_ms:.2f}x (+{agent_ms - server_ms:.2f} ms per task)")
    finally:
        agent.kill()
        server.terminate()
        server.wait()
        agent.wait()
        subprocess.run(["rm", "-rf", root], check=False)


if __name__ == "__main__":
    main()

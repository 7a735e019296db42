"""The ATS client against a real `testbay serve` (the binary from $TESTBAY_BIN)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
from typing import List, Optional

from testbay.ats import ATSClient, AtsError, ResourceUnavailable

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BIN = os.environ.get("TESTBAY_BIN")


class Console:
    """`testbay serve` on an ephemeral port with a temp data dir and the demo lab."""

    def __init__(self, bind: str = "127.0.0.1:0", token: Optional[str] = None) -> None:
        assert BIN
        self.data = tempfile.mkdtemp(prefix="testbay-ats-")
        args = [BIN, "serve", "--bind", bind, "--data-dir", self.data,
                "--lab", os.path.join(ROOT, "lab", "demo-lab.yaml"),
                "--ui-dir", self.data]
        if token:
            args += ["--token", token]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, RUST_LOG="warn"))
        self.lines: List[str] = []
        found = threading.Event()
        self.url = ""

        def read() -> None:
            assert self.proc.stdout
            for line in self.proc.stdout:
                self.lines.append(line)
                m = re.search(r"https?://[\d.]+:\d+", line)
                if m and not found.is_set():
                    self.url = m.group(0)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(30):
            self.stop()
            raise RuntimeError("testbay serve did not start:\n" + "".join(self.lines))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        shutil.rmtree(self.data, ignore_errors=True)


@unittest.skipUnless(BIN, "TESTBAY_BIN (the testbay binary) is not set")
class AtsClientTest(unittest.TestCase):
    console: Console

    @classmethod
    def setUpClass(cls) -> None:
        cls.console = Console()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.console.stop()

    def client(self) -> ATSClient:
        return ATSClient(self.console.url, by="script-ats")

    def test_resources_are_listed(self) -> None:
        c = self.client()
        every = c.get_all_resources()
        self.assertIn("ir_blaster", every)
        self.assertIn("stb-01", every)
        self.assertEqual(c.get_resource_config("ir_blaster"), {"protocol": "rc6"})
        with self.assertRaises(AtsError) as e:
            c.get_resource_config("no_such")
        self.assertEqual(e.exception.code, "not_found")

    def test_reserve_claim_renew_release_shows_a_holder_in_lab(self) -> None:
        c = self.client()
        pre, avail, expire = c.request_reservation("power_switch", reservation_duration=600)
        self.assertAlmostEqual(avail, time.time(), delta=30)
        self.assertGreater(expire, avail)
        # Held by the script, as Lab shows any holder.
        holds = c.server_communicate({"command": "reservations"})
        ps = [r for r in holds["resources"] if r["resource"] == "power_switch"][0]
        self.assertEqual([h["holder"] for h in ps["holders"]],
                         [{"kind": "operator", "name": "script-ats"}])
        self.assertNotIn("power_switch", c.get_available_resources())
        claim = c.claim_reservation(pre)
        self.assertEqual(claim["reservation_id"], pre)
        self.assertEqual(claim["resource_config"], {"outlets": 16})
        self.assertAlmostEqual(claim["expire_time"], avail + 600, delta=1)
        self.assertAlmostEqual(c.renew(pre), avail + 600, delta=1)
        # Busy now: the next window starts when this one ends.
        a = c.get_resource_availability("power_switch")
        self.assertFalse(a["available"])
        self.assertAlmostEqual(a["avail_start"], avail + 600, delta=1)
        with self.assertRaises(ResourceUnavailable) as e:
            c.request_reservation("power_switch", reservation_duration=60, next_available=False)
        self.assertIn(e.exception.code, ("busy", "conflict"))
        later, start, _ = c.request_reservation("power_switch", reservation_duration=60)
        self.assertAlmostEqual(start, avail + 600, delta=1)
        with self.assertRaises(ResourceUnavailable):
            c.claim_reservation(later)
        self.assertTrue(c.release_reservation(later))
        self.assertTrue(c.release_reservation(pre))
        self.assertIn("power_switch", c.get_available_resources())
        self.assertTrue(c.get_resource_availability("power_switch")["available"])
        with self.assertRaises(AtsError) as e:
            c.renew(pre)
        self.assertEqual(e.exception.code, "not_found")

    def test_a_reserved_dut_is_held_in_the_rack_view(self) -> None:
        c = self.client()
        pre, _, _ = c.request_reservation("stb-02", reservation_duration=120)
        lab = c.server_communicate({"command": "get_lab"})
        slot = [s for r in lab["racks"] for s in r["slots"] if s["dut"] == "stb-02"][0]
        self.assertEqual(slot["state"], "held")
        self.assertIn("script-ats", slot["holder"])
        c.release_reservation(pre)
        lab = c.server_communicate({"command": "get_lab"})
        slot = [s for r in lab["racks"] for s in r["slots"] if s["dut"] == "stb-02"][0]
        self.assertEqual(slot["state"], "free")

    def test_units_of_a_shared_resource_for_one_window_all_or_nothing(self) -> None:
        c = self.client()
        two, start, _ = c.request_reservation("stream_server", reservation_mode="shared",
                                              units=2, reservation_duration=300)
        self.assertEqual(len(two.split("+")), 2)
        holds = c.server_communicate({"command": "reservations"})
        ss = [r for r in holds["resources"] if r["resource"] == "stream_server"][0]
        self.assertEqual([h["mode"] for h in ss["holders"]], ["shared", "shared"])
        self.assertIn("stream_server", c.get_available_resources(), "2 of 4 units free")
        self.assertTrue(c.get_resource_availability("stream_server", units=2)["available"])
        self.assertFalse(c.get_resource_availability("stream_server", units=3)["available"])
        with self.assertRaises(ResourceUnavailable):
            c.request_reservation("stream_server", reservation_mode="shared", units=3,
                                  reservation_duration=60, next_available=False)
        ss = [r for r in c.server_communicate({"command": "reservations"})["resources"]
              if r["resource"] == "stream_server"][0]
        self.assertEqual(len(ss["holders"]), 2, "a refused request leaves nothing held")
        # Three units wait for the two to end: one window for all three.
        three, later, _ = c.request_reservation("stream_server", reservation_mode="shared",
                                                units=3, reservation_duration=60)
        self.assertAlmostEqual(later, start + 300, delta=1)
        with self.assertRaises(AtsError) as e:
            c.request_reservation("stream_server", reservation_mode="shared", units=5)
        self.assertEqual(e.exception.code, "invalid_request")
        with self.assertRaises(AtsError):
            c.request_reservation("power_switch", units=2)
        self.assertTrue(c.release_reservation(three))
        self.assertTrue(c.release_reservation(two))
        self.assertTrue(c.get_resource_availability("stream_server", units=4)["available"])

    def test_a_requested_configuration_is_claimed_over_the_resources(self) -> None:
        c = self.client()
        pre, _, _ = c.request_reservation("traffic_gen", res_config={"rate_mbps": 100},
                                          reservation_duration=120)
        claim = c.claim_reservation(pre)
        self.assertEqual(claim["resource_config"], {"ports": 4, "rate_mbps": 100})
        c.release_reservation(pre)

    def test_renew_extends_the_lease_and_an_unrenewed_hold_lapses(self) -> None:
        c = ATSClient(self.console.url, by="leased-script", lease=2.0)
        pre, avail, _ = c.request_reservation("ir_blaster", reservation_duration=600)
        first = c.claim_reservation(pre)["expire_time"]
        self.assertLess(first, avail + 10, "held on a 2 s lease, not the 600 s window")
        time.sleep(1.0)
        renewed = c.renew(pre)
        self.assertGreater(renewed, first + 0.5, "renewing moved the lease's end later")
        holds = c.server_communicate({"command": "reservations"})
        ir = [r for r in holds["resources"] if r["resource"] == "ir_blaster"][0]
        self.assertAlmostEqual(ir["holders"][0]["expires"] / 1000.0, renewed, delta=0.01)
        # Nobody renews: the console lets it lapse, and the blaster is free again.
        deadline = time.time() + 15
        while time.time() < deadline and "ir_blaster" not in c.get_available_resources():
            time.sleep(0.2)
        self.assertIn("ir_blaster", c.get_available_resources())
        with self.assertRaises(AtsError) as e:
            c.renew(pre)
        self.assertEqual(e.exception.code, "not_found")
        with self.assertRaises(AtsError) as e:
            c.request_reservation("ir_blaster", lease=0.5)
        self.assertEqual(e.exception.code, "invalid_request")

    def test_errors_carry_the_console_code(self) -> None:
        c = self.client()
        with self.assertRaises(AtsError) as e:
            c.request_reservation("no_such_thing")
        self.assertEqual(e.exception.code, "not_found")
        with self.assertRaises(AtsError) as e:
            c.request_reservation("traffic_gen", reservation_duration=0)
        self.assertEqual(e.exception.code, "invalid_request")
        with self.assertRaises(AtsError) as e:
            c.request_reservation("traffic_gen", reservation_mode="shared")
        self.assertEqual(e.exception.code, "invalid_request")
        with self.assertRaises(AtsError) as e:
            c.request_reservation("traffic_gen", reservation_mode="borrowed")
        self.assertEqual(e.exception.code, "invalid_request")
        with self.assertRaises(AtsError) as e:
            ATSClient("http://127.0.0.1:1").get_all_resources()
        self.assertEqual(e.exception.code, "unreachable")


@unittest.skipUnless(BIN, "TESTBAY_BIN (the testbay binary) is not set")
class AtsTokenTest(unittest.TestCase):
    def test_off_loopback_the_token_is_needed(self) -> None:
        console = Console(bind="0.0.0.0:0", token="s3cret-token")
        try:
            url = console.url.replace("0.0.0.0", "127.0.0.1")
            with self.assertRaises(AtsError) as e:
                ATSClient(url, token="wrong").get_all_resources()
            self.assertEqual(e.exception.status, 401)
            self.assertIn("ir_blaster", ATSClient(url, token="s3cret-token").get_all_resources())
            self.assertIn("ir_blaster",
                          ATSClient(url + "/?token=s3cret-token").get_all_resources())
        finally:
            console.stop()


if __name__ == "__main__":
    unittest.main()

"""An ATS client with kissats' method names and meanings, over a Testbay console's API.

A script outside any run (or a kissats TaskPack given this as its ``ats_client``) reserves
lab resources through the console's reservation book: ``POST /api`` of ``testbay serve``.
Reservations made here are operator holds (``by`` names who holds them), so Lab shows
them as holders like any run's. Off loopback the console wants its token (``token=`` or
``TESTBAY_TOKEN``). Times are epoch seconds (floats), as in kissats.

Holds are claimed by the console itself when their window starts (auto-claim):
``claim_reservation`` answers for a window that has started. A client made with
``lease=`` seconds (or a request given one) holds on a lease: the console lets the hold
lapse unless ``renew`` (the console's ``renew_hold``) renews it within the lease, so a
script that dies frees what it held; without one a hold lasts its whole window and
``renew`` only checks it is still live.

``reservation_mode="shared"`` takes units of a shared resource's capacity (``units``,
default one; several units are booked for the same window, all or nothing, and their ids
joined with ``+`` make one reservation id); ``"exclusive"`` takes all of it. ``res_config``
is a requested configuration (kissats), overlaid on the resource's current one; an
exclusive holder's configuration becomes the resource's while it holds it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["ATSClient", "AtsError", "ResourceUnavailable"]


class AtsError(Exception):
    """A request the console refused or could not be sent; ``code`` is the console's
    error code (``not_found``, ``conflict``, ``busy``, ``unavailable``, ...) or
    ``unreachable`` when no answer came."""

    def __init__(self, code: str, message: str, status: Optional[int] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class ResourceUnavailable(AtsError):
    """kissats' ``ResourceUnavailable``: the resource is not free when asked for."""


_UNAVAILABLE_CODES = {"busy", "conflict"}


def _ms(t: float) -> int:
    return int(round(t * 1000))


def _s(ms: int) -> float:
    return ms / 1000.0


class ATSClient:
    """kissats ``BaseATSClient`` talking to a Testbay console.

    ``ats_server`` is the console's address (``http://host:port``, as ``testbay serve``
    prints it; a ``?token=`` in it is used as the token). ``by`` names the holder shown in
    Lab (default: ``$USER`` or ``ats-client``).
    """

    def __init__(
        self,
        ats_server: str,
        token: Optional[str] = None,
        by: Optional[str] = None,
        timeout: float = 30.0,
        lease: Optional[float] = None,
    ) -> None:
        base, _, query = ats_server.partition("?")
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"ats_server must be an http:// address, got {ats_server!r}")
        if token is None and query.startswith("token="):
            token = query[len("token="):].split("&", 1)[0]
        self.ats_server = base.rstrip("/")
        self.token = token if token is not None else os.environ.get("TESTBAY_TOKEN")
        self.by = by or os.environ.get("USER") or "ats-client"
        self.timeout = timeout
        self.lease = lease

    # -- wire ---------------------------------------------------------------------------

    def _call(self, request: Dict[str, Any]) -> Any:
        """POST one API request; its ``data``, or :class:`AtsError` with the console's code."""
        body = json.dumps(request).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.ats_server + "/api", data=body, headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                doc = json.loads(res.read().decode())
        except urllib.error.HTTPError as e:
            raw = e.read().decode(errors="replace")
            try:
                err = json.loads(raw)["error"]
                code, message = str(err["code"]), str(err["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", f"HTTP {e.code}: {raw.strip()[:300]}"
            cls = ResourceUnavailable if code in _UNAVAILABLE_CODES else AtsError
            raise cls(code, message, e.code) from None
        except (urllib.error.URLError, OSError) as e:
            raise AtsError("unreachable",
                           f"cannot reach the console at {self.ats_server}: {e}") from None
        return doc.get("data")

    def server_communicate(self, server_request: Dict[str, Any]) -> Dict[str, Any]:
        """Send ``{"command": <API request name>, ...}`` and return the answer's data."""
        if "command" not in server_request:
            raise AtsError("invalid_request", "server_request needs a 'command' key")
        req = dict(server_request)
        req["cmd"] = req.pop("command")
        data = self._call(req)
        return data if isinstance(data, dict) else {"data": data}

    def _holds(self) -> Dict[str, Any]:
        return self._call({"cmd": "reservations"})

    def _inventory(self) -> Dict[str, Dict[str, Any]]:
        """Every resource of the lab (lab resources, then DUTs) with its kind."""
        lab = self._call({"cmd": "get_lab"})
        inv: Dict[str, Dict[str, Any]] = {r["name"]: r["kind"] for r in lab["resources"]}
        for d in lab["duts"]:
            inv.setdefault(d["name"], {"kind": "exclusive"})
        return inv

    def _all_holds(self) -> List[Dict[str, Any]]:
        """Holds of every resource, those nobody holds or waits for included."""
        live = {r["resource"]: r for r in self._holds()["resources"]}
        return [live.get(name) or {"resource": name, "kind": kind, "holders": [],
                                   "booked": [], "waiters": []}
                for name, kind in self._inventory().items()]

    def _resource_holds(self, resource: str) -> Dict[str, Any]:
        for r in self._all_holds():
            if r["resource"] == resource:
                return r
        raise AtsError("not_found", f"no resource {resource!r} in the console's lab")

    def _find(self, reservation_id: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        for r in self._holds()["resources"]:
            for v in r["holders"] + r["booked"] + r["waiters"]:
                if str(v["id"]) == str(reservation_id):
                    return r, v
        raise AtsError("not_found", f"no live reservation {reservation_id}")

    # -- kissats BaseATSClient ----------------------------------------------------------

    def get_all_resources(self) -> List[str]:
        """Every resource the console's book manages (lab resources and DUTs)."""
        return list(self._inventory())

    def get_available_resources(self) -> List[str]:
        """Resources with a free unit now."""
        return [r["resource"] for r in self._all_holds() if _units_free(r) > 0]

    def get_resource_config(self, resource: str) -> Any:
        """The current configuration of a resource (as the lab file gives it)."""
        lab = self._call({"cmd": "get_lab"})
        for r in lab["resources"]:
            if r["name"] == resource:
                return r["config"]
        for d in lab["duts"]:
            if d["name"] == resource:
                return {}
        raise AtsError("not_found", f"no resource {resource!r} in the console's lab")

    def get_resource_availability(
        self, resource: str, start_time: Optional[float] = None,
        end_time: Optional[float] = None, units: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Whether ``units`` of ``resource`` (default: all of it) are free from
        ``start_time`` (default now) to ``end_time`` (default one hour later); if not,
        ``avail_start``/``avail_end`` are the soonest window of the same length."""
        start = time.time() if start_time is None else start_time
        end = start + 3600.0 if end_time is None else end_time
        if end <= start:
            raise AtsError("invalid_request", "end_time must be after start_time")
        r = self._resource_holds(resource)
        cap = _capacity(r)
        need = cap if units is None else int(units)
        if not 1 <= need <= cap:
            raise AtsError("invalid_request",
                           f"units: {need} is out of range (1 to {cap} for {resource})")
        windows = [(v["start"], v["end"], _units(r, v))
                   for v in r["holders"] + r["booked"] + r["waiters"]]
        length = _ms(end) - _ms(start)
        candidates = sorted({_ms(start)} | {e for _, e, _ in windows if e > _ms(start)})
        for c in candidates:
            # Units in use only grow where a window starts: check the window's start and
            # every start inside it.
            points = [c] + [s for s, _, _ in windows if c < s < c + length]
            used = max(sum(u for s, e, u in windows if s <= p < e) for p in points)
            if used + need <= cap:
                return {"available": c == _ms(start), "avail_start": _s(c),
                        "avail_end": _s(c + length)}
        raise AtsError("internal", "no free window found")  # unreachable: the last end frees it

    def request_reservation(
        self, resource: str, res_config: Any = None, time_needed: Optional[float] = None,
        reservation_duration: float = 3600.0, next_available: bool = True,
        reservation_mode: str = "exclusive", units: int = 1,
        lease: Optional[float] = None,
    ) -> Tuple[str, float, float]:
        """Pre-reserve ``resource``: (pre-reservation id, epoch time it is available,
        epoch time the pre-reservation expires if not claimed, or its lease ends once
        held). Raises :class:`ResourceUnavailable` when busy and ``next_available`` is
        false. ``units`` (shared mode only) books that many units for one window."""
        if reservation_mode not in ("exclusive", "shared"):
            raise AtsError("invalid_request",
                           f"reservation_mode {reservation_mode!r}: 'exclusive' or 'shared'")
        if units < 1 or (units > 1 and reservation_mode != "shared"):
            raise AtsError("invalid_request",
                           f"units: {units}; more than one unit is for shared reservations")
        lease = self.lease if lease is None else lease
        req: Dict[str, Any] = {"cmd": "hold", "resource": resource, "by": self.by,
                               "duration_s": float(reservation_duration),
                               "next_available": bool(next_available),
                               "mode": reservation_mode}
        if res_config is not None:
            req["config"] = res_config
        if lease is not None:
            req["lease_s"] = float(lease)
        if time_needed is not None:
            req["from_ms"] = _ms(time_needed)
        if units == 1:
            v = self._call(req)
            return str(v["id"]), _s(v["start"]), _s(v["expires"])
        # Several units: all for one window, the soonest where they all fit.
        start = time.time() if time_needed is None else time_needed
        a = self.get_resource_availability(resource, start, start + reservation_duration,
                                           units=units)
        if not a["available"] and not next_available:
            raise ResourceUnavailable(
                "busy", f"{units} units of {resource} are not free at {start:.3f} "
                f"(next at {a['avail_start']:.3f})")
        req["from_ms"] = _ms(a["avail_start"])
        req["next_available"] = False
        taken: List[Dict[str, Any]] = []
        try:
            for _ in range(units):
                taken.append(self._call(req))
        except AtsError:
            for v in taken:
                self._call({"cmd": "release", "id": str(v["id"])})
            raise
        return ("+".join(str(v["id"]) for v in taken), _s(taken[0]["start"]),
                min(_s(v["expires"]) for v in taken))

    def claim_reservation(self, pre_reservation_id: str) -> Dict[str, Any]:
        """Claim a pre-reservation whose window has started: ``reservation_id``,
        ``expire_time`` (its lease's end, or its window's without a lease),
        ``resource_config`` (the resource's configuration with the one requested over
        it). Before its window: :class:`ResourceUnavailable` naming when it starts."""
        parts = [self._find(i) for i in _ids(pre_reservation_id)]
        for r, v in parts:
            if v["status"] != "held":
                raise ResourceUnavailable(
                    "busy", f"reservation {v['id']} of {r['resource']} starts at "
                    f"{_s(v['start']):.3f} (epoch s), not yet")
        r, v = parts[0]
        config = _overlay(self.get_resource_config(r["resource"]), v.get("config"))
        return {"reservation_id": str(pre_reservation_id),
                "expire_time": min(_s(v["expires"] if v.get("lease_ms") else v["end"])
                                   for _, v in parts),
                "resource_config": config}

    def renew(self, reservation_id: str) -> float:
        """Renew a held reservation's lease through the console (``renew_hold``): it now
        lapses a lease from now, never after its window ends. The new expiry (epoch s);
        without a lease, the window's end."""
        out = []
        for i in _ids(reservation_id):
            v = self._call({"cmd": "renew_hold", "id": i})
            out.append(_s(v["expires"] if v.get("lease_ms") else v["end"]))
        return min(out)

    def release_reservation(self, reservation_id: str) -> bool:
        """Release a reservation or pre-reservation; True once released."""
        for i in _ids(reservation_id):
            self._call({"cmd": "release", "id": i})
        return True

    release_resource = release_reservation


def _ids(reservation_id: str) -> List[str]:
    return [p for p in str(reservation_id).split("+") if p]


def _overlay(base: Any, requested: Any) -> Any:
    """The book's overlay: a requested object's keys over the resource's."""
    if requested is None:
        return base
    if isinstance(base, dict) and isinstance(requested, dict):
        return {**base, **requested}
    return requested


def _capacity(r: Dict[str, Any]) -> int:
    return int(r["kind"].get("capacity", 1)) if r["kind"]["kind"] == "shared" else 1


def _units(r: Dict[str, Any], v: Dict[str, Any]) -> int:
    if r["kind"]["kind"] == "shared" and v["mode"] == "shared":
        return 1
    return _capacity(r)


def _units_free(r: Dict[str, Any]) -> int:
    return _capacity(r) - sum(_units(r, v) for v in r["holders"])

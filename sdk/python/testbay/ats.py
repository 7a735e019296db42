"""An ATS client with kissats' method names and meanings, over a Testbay console's API.

A script outside any run (or a kissats TaskPack given this as its ``ats_client``) reserves
lab resources through the console's reservation book: ``POST /api`` of ``testbay serve``.
Reservations made here are operator holds (``by`` names who holds them), so Lab shows
them as holders like any run's. Off loopback the console wants its token (``token=`` or
``TESTBAY_TOKEN``). Times are epoch seconds (floats), as in kissats.

Holds are claimed by the console itself when their window starts (auto-claim) and have no
lease: ``claim_reservation`` answers for a window that has started, ``renew`` checks the
hold is still live. Only ``exclusive`` reservations without a requested configuration can
be made this way.
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
        end_time: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Whether ``resource`` is free from ``start_time`` (default now) to ``end_time``
        (default one hour later); if not, ``avail_start``/``avail_end`` are the soonest
        window of the same length."""
        start = time.time() if start_time is None else start_time
        end = start + 3600.0 if end_time is None else end_time
        if end <= start:
            raise AtsError("invalid_request", "end_time must be after start_time")
        r = self._resource_holds(resource)
        windows = [(v["start"], v["end"], _units(r, v))
                   for v in r["holders"] + r["booked"] + r["waiters"]]
        cap = r["kind"].get("capacity", 1) if r["kind"]["kind"] == "shared" else 1
        length = _ms(end) - _ms(start)
        candidates = sorted({_ms(start)} | {e for _, e, _ in windows if e > _ms(start)})
        for c in candidates:
            used = sum(u for s, e, u in windows if s < c + length and e > c)
            if used < cap:
                return {"available": c == _ms(start), "avail_start": _s(c),
                        "avail_end": _s(c + length)}
        raise AtsError("internal", "no free window found")  # unreachable: the last end frees it

    def request_reservation(
        self, resource: str, res_config: Any = None, time_needed: Optional[float] = None,
        reservation_duration: float = 3600.0, next_available: bool = True,
        reservation_mode: str = "exclusive",
    ) -> Tuple[str, float, float]:
        """Pre-reserve ``resource``: (pre-reservation id, epoch time it is available,
        epoch time the pre-reservation expires if not claimed). Raises
        :class:`ResourceUnavailable` when busy and ``next_available`` is false."""
        if reservation_mode != "exclusive":
            raise AtsError("invalid_request",
                           f"reservation_mode {reservation_mode!r}: only 'exclusive' "
                           "reservations can be made through the console's holds")
        if res_config is not None:
            raise AtsError("invalid_request",
                           "res_config: the console does not configure resources on request")
        req: Dict[str, Any] = {"cmd": "hold", "resource": resource, "by": self.by,
                               "duration_s": float(reservation_duration),
                               "next_available": bool(next_available)}
        if time_needed is not None:
            req["from_ms"] = _ms(time_needed)
        v = self._call(req)
        return str(v["id"]), _s(v["start"]), _s(v["expires"])

    def claim_reservation(self, pre_reservation_id: str) -> Dict[str, Any]:
        """Claim a pre-reservation whose window has started: ``reservation_id``,
        ``expire_time``, ``resource_config``. Before its window: :class:`ResourceUnavailable`
        naming when it starts."""
        r, v = self._find(pre_reservation_id)
        if v["status"] != "held":
            raise ResourceUnavailable(
                "busy", f"reservation {v['id']} of {r['resource']} starts at "
                f"{_s(v['start']):.3f} (epoch s), not yet")
        return {"reservation_id": str(v["id"]), "expire_time": _s(v["end"]),
                "resource_config": self.get_resource_config(r["resource"])}

    def renew(self, reservation_id: str) -> float:
        """Holds have no lease: check ``reservation_id`` is still live; its end (epoch s)."""
        _, v = self._find(reservation_id)
        return _s(v["end"])

    def release_reservation(self, reservation_id: str) -> bool:
        """Release a reservation or pre-reservation; True once released."""
        self._call({"cmd": "release", "id": str(reservation_id)})
        return True

    release_resource = release_reservation


def _units(r: Dict[str, Any], v: Dict[str, Any]) -> int:
    if r["kind"]["kind"] == "shared" and v["mode"] == "shared":
        return 1
    return r["kind"].get("capacity", 1) if r["kind"]["kind"] == "shared" else 1


def _units_free(r: Dict[str, Any]) -> int:
    cap = r["kind"].get("capacity", 1) if r["kind"]["kind"] == "shared" else 1
    return cap - sum(_units(r, v) for v in r["holders"])

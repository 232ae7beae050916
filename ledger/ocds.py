"""Procurement leaves as an OCDS 1.1 release package (SPEC §5, §6 ``/procurement/ocds``, §7).

``build_release_package`` turns the ``procurement.*`` leaves of one or more logs, given in
log order, into an Open Contracting Data Standard release package that validates against
the official OCDS 1.1.5 release-package schema (core fields only, no extensions). Callers
choose which leaves go in (the public export passes only approved public leaves); this
module only maps. It uses the standard library only, so the archive can rebuild it anywhere.

Mapping, per contracting process (one per ``tender_id``; ``ocid = <prefix>-<tender_id>``):

- **One release per leaf**, ``id = "<log>-<index>"`` (unique and stable), ``date`` = the
  leaf's ``recorded_at`` (UTC, microseconds, ``Z``: a valid RFC 3339 date-time).
- **Each release is a snapshot**: it carries everything known about its process after that
  leaf (parties, buyer, tender, awards, contracts), not only what the leaf changed. A single
  release therefore reads on its own, and the latest release of an ocid is its compiled
  state. ``tag`` says what the leaf itself reported:

  ========================  =========================  ===================================
  kind                      tag                        what changes in the snapshot
  ========================  =========================  ===================================
  procurement.tender        ``tender``                 tender title, method, value, period;
                                                       buyer; planning.budget.projectID
  procurement.bid           ``tenderUpdate``           tender.tenderers, numberOfTenderers
  procurement.award         ``award``                  awards[] (+1, status ``active``)
  procurement.contract      ``contract``               contracts[] (+1, status ``active``)
  procurement.amendment     ``tenderAmendment``        tender.amendments[] (+1); the
                                                       changes the ledger applies (title,
                                                       value, period) are applied
  procurement.cancelled     ``tenderCancellation``     tender.status ``cancelled``, reason
                                                       as a ``cancellationDetails`` document
  ========================  =========================  ===================================

  A ``correction.reversal`` leaf whose target is a bid, award or contract leaf given earlier
  in the same input also yields a release (bid: ``tenderUpdate``, the bidder leaves the
  tenderers unless it has another bid; award: ``awardCancellation``, award status
  ``cancelled``; contract: ``contractUpdate``, contract status ``cancelled``), so a corrected
  mistake does not stay live in the export. Every other kind is ignored.

- **Tender status**: ``active``; ``complete`` while an active award exists; ``cancelled``
  after ``procurement.cancelled``.
- **Ids**: award ``<tender_id>-award-<log>-<index>`` of the award leaf; contract
  ``contract_id`` (suffixed ``-<log>-<index>`` should a process reuse one); the contract's
  ``awardID`` is the process's latest active award, as the ledger's books decide it. If no
  award of the process was given (withheld from the public), the contract refers to a
  minimal stand-in award ``<tender_id>-award-for-<contract_id>`` that names the supplier only.
  Party ids are the ledger's party ids unchanged; roles are ``buyer``, ``tenderer``,
  ``supplier``. A process whose tender leaf is absent (withheld) still gets its releases,
  with what the other leaves tell.
- **Dates**: ledger dates are local calendar dates; they become date-times at
  ``utc_offset`` (default ``+08:00``, China Standard Time): midnight, except a tender
  period's ``endDate``, which is the last second of its day (the deadline day is included).
- **Money**: OCDS amounts are JSON numbers. This is the one place in Gongkai where a float
  appears: the exact two-place decimal string becomes an ``int`` when whole, else the
  ``float`` nearest to it. Every ledger amount has at most 15 significant digits
  (< 10^12 yuan, two places), so ``repr`` of that float prints exactly the decimal again;
  the float exists only for OCDS compatibility and is never summed or stored.
- **Bids' amounts** have no place in core OCDS (they need the bids extension); the export
  lists the bidders only. Project codes go to ``planning.budget.projectID``.
- **Order**: releases keep the input (log) order, which is the order the ledger decided
  them in; snapshots need it. Indices must increase within each log (``ValueError``
  otherwise). Same input, same dict: nothing here reads the clock or randomness, so the
  archive builds byte-identical files.

An input without procurement leaves gives ``"releases": []``, which the schema rejects
(``minItems: 1``); callers that must publish a valid file should skip it then.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["OCDS_VERSION", "TAGS", "build_release_package", "ocds_amount"]

#: The ``version`` of the package; the schema's pattern wants major.minor only.
OCDS_VERSION = "1.1"

#: The release tag of each procurement kind.
TAGS: dict[str, str] = {
    "procurement.tender": "tender",
    "procurement.bid": "tenderUpdate",
    "procurement.award": "award",
    "procurement.contract": "contract",
    "procurement.amendment": "tenderAmendment",
    "procurement.cancelled": "tenderCancellation",
}

#: The release tag of a reversal, by the kind it reverses.
_REVERSAL_TAGS: dict[str, str] = {
    "procurement.bid": "tenderUpdate",
    "procurement.award": "awardCancellation",
    "procurement.contract": "contractUpdate",
}

_METHODS = frozenset({"open", "selective", "limited", "direct"})
_OFFSET_RE = re.compile(r"^(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])$")
_AMOUNT_RE = re.compile(r"^-?[0-9]+(\.[0-9]{1,2})?$")
_ROLES = ("buyer", "tenderer", "supplier")
_DEFAULT_CURRENCY = "CNY"


def ocds_amount(text: str) -> int | float:
    """An exact decimal amount string as the JSON number OCDS wants.

    ``"3080000.00"`` gives ``3080000`` (int); ``"1234567.89"`` gives ``1234567.89``, the
    float nearest the decimal, whose ``repr`` is the same decimal again for every amount
    the ledger accepts. Refuses anything but a plain decimal with at most two places.
    """
    if not isinstance(text, str) or not _AMOUNT_RE.match(text):
        raise ValueError(f"not a decimal amount with at most two places: {text!r}")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise ValueError(f"not a decimal amount: {text!r}") from None
    if value == value.to_integral_value():
        return int(value)
    number = float(value)
    if Decimal(repr(number)) != value:
        raise ValueError(f"amount {text} has no exact float representation")
    return number


@dataclass
class _Bid:
    bidder: str
    ref: tuple[str, int]
    active: bool = True


@dataclass
class _Award:
    id: str
    supplier: str
    date: str | None
    amount: str | None
    ref: tuple[str, int] | None
    status: str = "active"


@dataclass
class _Contract:
    id: str
    award_id: str
    supplier: str
    date_signed: str
    amount: str
    ref: tuple[str, int]
    status: str = "active"


@dataclass
class _Process:
    """What is known of one contracting process so far."""

    tender_id: str
    ocid: str
    title: str | None = None
    method: str | None = None
    amount: str | None = None
    currency: str | None = None
    start: str | None = None
    end: str | None = None
    buyer: str | None = None
    project_code: str | None = None
    cancelled: bool = False
    bids: list[_Bid] = field(default_factory=list)
    awards: list[_Award] = field(default_factory=list)
    contracts: list[_Contract] = field(default_factory=list)
    amendments: list[dict[str, Any]] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)
    #: Party id -> latest name, in the order parties were first seen.
    names: dict[str, str] = field(default_factory=dict)
    last_release: str | None = None

    def see(self, party: Mapping[str, Any]) -> str:
        pid = str(party["id"])
        # The latest name wins; a dict keeps the key where it was first inserted.
        self.names[pid] = str(party["name"])
        return pid


class _Builder:
    def __init__(self, *, ocid_prefix: str, utc_offset: str) -> None:
        self.ocid_prefix = ocid_prefix
        self.utc_offset = utc_offset
        self.processes: dict[str, _Process] = {}
        #: (log, index) of each bid, award and contract leaf -> its process, kind and record.
        self.events: dict[tuple[str, int], tuple[_Process, str, _Bid | _Award | _Contract]] = {}
        self.last_index: dict[str, int] = {}
        self.releases: list[dict[str, Any]] = []

    # --- helpers -----------------------------------------------------------------------

    def process(self, tender_id: str) -> _Process:
        proc = self.processes.get(tender_id)
        if proc is None:
            proc = _Process(tender_id, f"{self.ocid_prefix}-{tender_id}")
            self.processes[tender_id] = proc
        return proc

    def at(self, day: str, *, end_of_day: bool = False) -> str:
        """A ledger date (``YYYY-MM-DD``) as an RFC 3339 date-time at ``utc_offset``."""
        date = dt.date.fromisoformat(day)
        clock = "23:59:59" if end_of_day else "00:00:00"
        return f"{date.isoformat()}T{clock}{self.utc_offset}"

    def value(self, proc: _Process, amount: str) -> dict[str, Any]:
        return {"amount": ocds_amount(amount), "currency": proc.currency or _DEFAULT_CURRENCY}

    # --- leaves ------------------------------------------------------------------------

    def add(self, leaf: Mapping[str, Any]) -> None:
        kind = str(leaf["kind"])
        if kind == "correction.reversal":
            self.reversal(leaf)
            return
        if not kind.startswith("procurement."):
            return
        if kind not in TAGS:
            raise ValueError(f"no OCDS mapping for kind {kind!r}")
        log, index = self.position(leaf)
        body: Mapping[str, Any] = leaf["body"]
        proc = self.process(str(body["tender_id"]))
        ref = (log, index)
        if kind == "procurement.tender":
            proc.title = str(body["title"])
            proc.method = str(body["method"]) if body["method"] in _METHODS else None
            proc.amount = str(body["value"]["amount"])
            proc.currency = str(body["value"].get("currency") or _DEFAULT_CURRENCY)
            proc.start = str(body["period"]["start"])
            proc.end = str(body["period"]["end"])
            proc.buyer = proc.see(body["buyer"])
            code = body.get("project_code")
            proc.project_code = str(code) if code else None
        elif kind == "procurement.bid":
            bid = _Bid(proc.see(body["bidder"]), ref)
            proc.bids.append(bid)
            self.events[ref] = (proc, kind, bid)
        elif kind == "procurement.award":
            award = _Award(
                f"{proc.tender_id}-award-{log}-{index}",
                proc.see(body["supplier"]),
                self.at(str(body["date"])),
                str(body["amount"]),
                ref,
            )
            proc.awards.append(award)
            self.events[ref] = (proc, kind, award)
        elif kind == "procurement.contract":
            contract = self.contract(proc, body, ref)
            proc.contracts.append(contract)
            self.events[ref] = (proc, kind, contract)
        elif kind == "procurement.amendment":
            self.amend(proc, leaf, body)
        else:  # procurement.cancelled
            proc.cancelled = True
            proc.documents.append(
                {
                    "id": f"{proc.tender_id}-cancellation-{log}-{index}",
                    "documentType": "cancellationDetails",
                    "description": str(body["reason"]),
                    "datePublished": _release_date(leaf),
                }
            )
        self.emit(proc, leaf, TAGS[kind])

    def position(self, leaf: Mapping[str, Any]) -> tuple[str, int]:
        log = str(leaf["log"])
        index = leaf["index"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"leaf of {log} has a bad index: {index!r}")
        last = self.last_index.get(log)
        if last is not None and index <= last:
            raise ValueError(f"leaves of {log} are not in log order: index {index} after {last}")
        self.last_index[log] = index
        return log, index

    def contract(self, proc: _Process, body: Mapping[str, Any], ref: tuple[str, int]) -> _Contract:
        supplier = proc.see(body["supplier"])
        active = [a for a in proc.awards if a.status == "active"]
        if active:
            award_id = active[-1].id
        else:
            # The award was not given (withheld): refer to a stand-in that names the
            # supplier only, so awardID still resolves inside the release.
            award_id = f"{proc.tender_id}-award-for-{body['contract_id']}"
            if all(a.id != award_id for a in proc.awards):
                proc.awards.append(_Award(award_id, supplier, None, None, None))
        contract_id = str(body["contract_id"])
        if any(c.id == contract_id for c in proc.contracts):
            contract_id = f"{contract_id}-{ref[0]}-{ref[1]}"
        return _Contract(
            contract_id,
            award_id,
            supplier,
            self.at(str(body["signed_on"])),
            str(body["amount"]),
            ref,
        )

    def amend(self, proc: _Process, leaf: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        changes: Mapping[str, Any] = body.get("changes") or {}
        # Apply what the ledger's books apply; anything else is told in the description.
        title = changes.get("title")
        if isinstance(title, str) and title:
            proc.title = title
        value = changes.get("value")
        if isinstance(value, Mapping) and isinstance(value.get("amount"), str):
            ocds_amount(value["amount"])
            proc.amount = value["amount"]
            if isinstance(value.get("currency"), str):
                proc.currency = value["currency"]
        period = changes.get("period")
        if isinstance(period, Mapping):
            if isinstance(period.get("start"), str):
                proc.start = period["start"]
            if isinstance(period.get("end"), str):
                proc.end = period["end"]
        amendment: dict[str, Any] = {
            "id": f"{proc.tender_id}-amendment-{leaf['log']}-{leaf['index']}",
            "date": self.at(str(leaf["occurred_on"])),
            "rationale": str(body["rationale"]),
            # Semi-structured, as OCDS allows: the changes as canonical JSON.
            "description": json.dumps(
                changes, ensure_ascii=False, sort_keys=True, separators=(",", ":")
            ),
        }
        if proc.last_release is not None:
            amendment["amendsReleaseID"] = proc.last_release
        amendment["releaseID"] = _release_id(leaf)
        proc.amendments.append(amendment)

    def reversal(self, leaf: Mapping[str, Any]) -> None:
        body: Mapping[str, Any] = leaf["body"]
        index = body.get("target_index")
        if not isinstance(index, int):
            return
        found = self.events.get((str(body.get("target_log")), index))
        if found is None:
            return  # not a procurement event of this input: nothing to say in OCDS
        self.position(leaf)
        proc, kind, record = found
        if isinstance(record, _Bid):
            record.active = False
        else:
            record.status = "cancelled"
        self.emit(proc, leaf, _REVERSAL_TAGS[kind])

    # --- releases ----------------------------------------------------------------------

    def emit(self, proc: _Process, leaf: Mapping[str, Any], tag: str) -> None:
        release_id = _release_id(leaf)
        release: dict[str, Any] = {
            "ocid": proc.ocid,
            "id": release_id,
            "date": _release_date(leaf),
            "tag": [tag],
            "initiationType": "tender",
            "language": "zh",
        }
        tenderers = list(dict.fromkeys(b.bidder for b in proc.bids if b.active))
        suppliers = [a.supplier for a in proc.awards] + [c.supplier for c in proc.contracts]
        roles: dict[str, list[str]] = {}
        for role, ids in (
            ("buyer", [proc.buyer] if proc.buyer else []),
            ("tenderer", tenderers),
            ("supplier", suppliers),
        ):
            for pid in ids:
                roles.setdefault(pid, [])
                if role not in roles[pid]:
                    roles[pid].append(role)
        parties = [
            {"id": pid, "name": name, "roles": sorted(roles[pid], key=_ROLES.index)}
            for pid, name in proc.names.items()
            if pid in roles
        ]
        if parties:
            release["parties"] = parties
        if proc.buyer:
            release["buyer"] = self.ref(proc, proc.buyer)
        if proc.project_code:
            release["planning"] = {"budget": {"projectID": proc.project_code}}
        release["tender"] = self.tender(proc, tenderers)
        if proc.awards:
            release["awards"] = [self.award(proc, a) for a in proc.awards]
        if proc.contracts:
            release["contracts"] = [self.contract_json(proc, c) for c in proc.contracts]
        self.releases.append(release)
        proc.last_release = release_id

    def ref(self, proc: _Process, pid: str) -> dict[str, Any]:
        return {"id": pid, "name": proc.names[pid]}

    def tender(self, proc: _Process, tenderers: list[str]) -> dict[str, Any]:
        tender: dict[str, Any] = {"id": proc.tender_id}
        if proc.title is not None:
            tender["title"] = proc.title
        if proc.cancelled:
            tender["status"] = "cancelled"
        elif any(a.status == "active" for a in proc.awards):
            tender["status"] = "complete"
        else:
            tender["status"] = "active"
        if proc.method is not None:
            tender["procurementMethod"] = proc.method
        if proc.amount is not None:
            tender["value"] = self.value(proc, proc.amount)
        if proc.start is not None or proc.end is not None:
            period: dict[str, Any] = {}
            if proc.start is not None:
                period["startDate"] = self.at(proc.start)
            if proc.end is not None:
                period["endDate"] = self.at(proc.end, end_of_day=True)
            tender["tenderPeriod"] = period
        if proc.bids:
            tender["numberOfTenderers"] = len(tenderers)
            if tenderers:
                tender["tenderers"] = [self.ref(proc, pid) for pid in tenderers]
        if proc.documents:
            tender["documents"] = [dict(d) for d in proc.documents]
        if proc.amendments:
            tender["amendments"] = [dict(a) for a in proc.amendments]
        return tender

    def award(self, proc: _Process, award: _Award) -> dict[str, Any]:
        out: dict[str, Any] = {"id": award.id, "status": award.status}
        if award.date is not None:
            out["date"] = award.date
        if award.amount is not None:
            out["value"] = self.value(proc, award.amount)
        out["suppliers"] = [self.ref(proc, award.supplier)]
        return out

    def contract_json(self, proc: _Process, contract: _Contract) -> dict[str, Any]:
        return {
            "id": contract.id,
            "awardID": contract.award_id,
            "status": contract.status,
            "dateSigned": contract.date_signed,
            "value": self.value(proc, contract.amount),
        }


def _release_id(leaf: Mapping[str, Any]) -> str:
    return f"{leaf['log']}-{leaf['index']}"


def _release_date(leaf: Mapping[str, Any]) -> str:
    """The leaf's ``recorded_at`` as an RFC 3339 UTC date-time with microseconds."""
    text = str(leaf["recorded_at"])
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"leaf {_release_id(leaf)}: bad recorded_at {text!r}") from None
    if when.tzinfo is None:
        raise ValueError(f"leaf {_release_id(leaf)}: recorded_at {text!r} has no time zone")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_release_package(
    leaves: Iterable[Mapping[str, Any]],
    *,
    ocid_prefix: str,
    publisher: str,
    uri: str,
    published_date: str,
    utc_offset: str = "+08:00",
) -> dict[str, Any]:
    """The OCDS 1.1 release package of the procurement ``leaves`` (in log order).

    ``ocid_prefix`` is the publisher's registered prefix (``ocds-xxxxxx``); ``uri`` and
    ``published_date`` (an RFC 3339 date-time) are copied into the package as given, so
    the caller keeps them stable for byte-identical archives. ``utc_offset`` is the zone
    of the ledger's calendar dates. See the module docstring for the mapping.
    """
    if not ocid_prefix:
        raise ValueError("ocid_prefix must not be empty")
    if not _OFFSET_RE.match(utc_offset):
        raise ValueError(f"utc_offset must look like +08:00 or Z, not {utc_offset!r}")
    builder = _Builder(ocid_prefix=ocid_prefix, utc_offset=utc_offset)
    for leaf in leaves:
        builder.add(leaf)
    return {
        "uri": uri,
        "version": OCDS_VERSION,
        "publishedDate": published_date,
        "publisher": {"name": publisher},
        "releases": builder.releases,
    }

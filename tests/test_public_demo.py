"""The public API over the demo data: OCDS conformance, and nothing withheld leaks."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import orjson
import pytest

from tests.conftest import DEMO_YEAR, conformance_dir

ORGS = ("sz-epb", "qx-health")


def _ocds_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    base = conformance_dir() / "ocds-1.1.5"
    if not base.is_dir():
        pytest.skip(f"OCDS conformance schemas not found at {base}")
    package = json.loads((base / "release-package-schema.json").read_text())
    release = json.loads((base / "release-schema.json").read_text())
    registry = referencing.Registry().with_resources(
        [
            (
                release["id"],
                referencing.Resource.from_contents(release, referencing.jsonschema.DRAFT4),
            ),
        ]
    )
    cls = jsonschema.validators.validator_for(package)
    return cls(package, registry=registry, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("staff", [False, True])
async def test_ocds_export_of_the_demo_validates_against_ocds_1_1_5(
    client: Any, demo: str, pool: asyncpg.Pool, staff: bool
) -> None:
    validator = _ocds_validator()
    headers = {}
    if staff:
        from ledger import access

        token = await access.create_token("sz-epb", "auditor", f"ocds.auditor.{staff}")
        headers = {"Authorization": f"Bearer {token}"}
    r = await client.get(f"/api/v1/orgs/sz-epb/procurement/ocds?year={DEMO_YEAR}", headers=headers)
    assert r.status_code == 200, r.text
    package = r.json()
    errors = sorted(validator.iter_errors(package), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    assert package["version"] == "1.1"
    tags = {t for rel in package["releases"] for t in rel["tag"]}
    assert {"tender", "award", "contract"} <= tags
    assert all(rel["ocid"].startswith("ocds-gongkai-") for rel in package["releases"])
    withheld_tender = any(rel["ocid"].endswith("ZC-2025-006") and "tender" in rel["tag"]
                          for rel in package["releases"])  # fmt: skip
    assert withheld_tender == staff


def _strings(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return {str(value)} if isinstance(value, str) else set()


async def _secrets(pool: asyncpg.Pool) -> dict[str, str]:
    """Salts, and body strings found only in withheld or internal leaves, by where from."""
    rows = await pool.fetch(
        """SELECT l.org, l.year, l.idx, l.leaf, l.kind, l.visibility, rv.decision
           FROM leaves l LEFT JOIN reviews rv ON rv.org = l.org AND rv.target_year = l.year
                AND rv.target_index = l.idx
           WHERE l.org = ANY($1)""",
        list(ORGS),
    )
    from ledger.queries import status_of

    shown: set[str] = set()
    hidden: dict[str, str] = {}
    for r in rows:
        leaf = orjson.loads(r["leaf"])
        status = status_of(r["kind"], r["visibility"], r["decision"])
        where = f"{r['org']}/{r['year']}#{r['idx']} ({status})"
        if status == "approved":
            shown |= _strings(leaf["body"])
        elif status in ("withheld", "internal"):
            hidden[leaf["salt"]] = where + " salt"
            for s in _strings(leaf["body"]):
                hidden.setdefault(s, where)
    return {s: w for s, w in hidden.items() if s not in shown and len(s) >= 4}


async def test_no_public_route_reveals_withheld_or_internal_content(
    client: Any, demo: str, pool: asyncpg.Pool
) -> None:
    # The schema's own words (a category such as transfer_payment) tell nothing of
    # an entry, whichever entries hold them.
    vocabulary = (await client.get("/schema/openapi.json")).text
    secrets = {s: w for s, w in (await _secrets(pool)).items() if s not in vocabulary}
    assert len(secrets) > 20  # salts, references, amounts of withheld and internal entries
    urls = ["/api/v1/orgs", "/api/v1/vkey", "/schema/openapi.json"]
    y = DEMO_YEAR
    for org in ORGS:
        base = f"/api/v1/orgs/{org}"
        urls += [
            base,
            f"{base}/entries?format=csv",
            f"{base}/entries?format=ndjson",
            f"{base}/entries?year={y}&kind=fund.receipt&limit=1000",
            f"{base}/entries?subject=fund/OFFICE",
            f"{base}/entries?since={y}-01-01&until={y}-12-31&limit=1000",
            f"{base}/logs/{y}/leaves",
            f"{base}/logs/{y}/checkpoint",
            f"{base}/logs/{y}/proofs/inclusion?index=3&tree_size=10",
            f"{base}/logs/{y}/proofs/consistency?first=5&second=10",
            f"{base}/funds",
            f"{base}/projects",
            f"{base}/procurement/tenders",
            f"{base}/procurement/summary?year={y}",
            f"{base}/procurement/ocds?year={y}",
        ]
        for fund in ("PWF", "WZBZ", "OFFICE", "NCMS"):
            urls.append(f"{base}/funds/{fund}")
            for period in ("month", "quarter", "year"):
                urls.append(f"{base}/funds/{fund}/summary?year={y}&period={period}")
        size = await pool.fetchval("SELECT size FROM logs WHERE org = $1 AND year = $2", org, y)
        urls += [f"{base}/logs/{y}/entries/{i}" for i in range(size)]
        cursor = None
        while True:
            page = (
                await client.get(
                    f"{base}/entries?limit=50" + (f"&cursor={cursor}" if cursor else "")
                )
            ).json()
            urls.append(f"{base}/entries?limit=50" + (f"&cursor={cursor}" if cursor else ""))
            cursor = page["next_cursor"]
            if cursor is None:
                break
        projects = (await client.get(f"{base}/projects")).json()
        urls += [f"{base}/projects/{p['project_code']}" for p in projects]
    for url in urls:
        r = await client.get(url)
        assert r.status_code in (200, 404), (url, r.status_code, r.text[:200])
        text = r.text
        for secret, where in secrets.items():
            if secret in url:
                continue  # a 404 may echo what was asked
            assert secret not in text, f"{url} reveals {secret!r} of {where}"

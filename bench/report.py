"""The markdown report: summary of targets, machine, and each scenario's figures."""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    elif isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:,}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    lines = ["| " + " | ".join(_cell(k) for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(row.get(k, "")) for k in keys) + " |" for row in rows]
    return lines


def _met(met: bool) -> str:
    return "yes" if met else "**no**"


def render(run: dict[str, Any], results: list[dict[str, Any]]) -> str:
    out = [
        "# Gongkai benchmarks",
        "",
        f"Size **{run['size']}**, run on {run['date']}, in {run['seconds']:.0f} s, of which "
        f"{sum(r.get('load_seconds', 0) for r in results):.0f} s loading data (see each "
        "scenario). Every scenario ran with its raw baseline in the same run, on the same "
        "database server and machine.",
        "",
        "Rerun:",
        "",
        "```sh",
        run["rerun"],
        "```",
        "",
        f"As run: `{run['as_run']}`",
        "",
        "## Summary",
        "",
    ]
    summary = []
    for r in results:
        if "error" in r:
            summary.append(
                {
                    "scenario": r["name"],
                    "target": "(scenario failed)",
                    "measured": r["error"].splitlines()[0][:120],
                    "met": "**no**",
                }
            )
            continue
        for t in r["targets"]:
            summary.append(
                {
                    "scenario": r["name"],
                    "target": t["target"],
                    "measured": t["measured"],
                    "met": _met(t["met"]),
                }
            )
    out += table(summary)
    out += ["", "## Machine", ""]
    out += table([{"": k, "value": v} for k, v in run["machine"].items()])
    for n, r in enumerate(results, start=1):
        out += ["", f"## {n}. {r.get('title', r['name'])} (`{r['name']}`)", ""]
        if "error" in r:
            out += ["The scenario failed:", "", "```", r["error"], "```"]
            continue
        for t in r["tables"]:
            out += [f"{t['caption']}:", "", *table(t["rows"]), ""]
        out += table(
            [
                {"target": t["target"], "measured": t["measured"], "met": _met(t["met"])}
                for t in r["targets"]
            ]
        )
        for note in r["notes"]:
            out += ["", note]
        if r.get("profile"):
            out += ["", "Profile (py-spy):", "", "```", *r["profile"], "```"]
        out += ["", f"Scenario time: {r['seconds']:.0f} s."]
    return "\n".join(out) + "\n"

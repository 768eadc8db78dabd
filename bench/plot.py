"""Draw a bench/run.py result as a picture: req/s and p99 per configuration, one group of
bars per scenario (wrk through Envoy). Needs matplotlib (the `pictures` extra).

    .venv/bin/python bench/plot.py bench/results.json bench/results.png

The picture is the table's wrk rows, nothing else: rows marked MISMATCH are drawn hatched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# The configurations drawn, in this order, with the colour each keeps in every panel.
COLOURS = {
    "b-native": "#4c72b0",
    "c-uvloop": "#8c8c8c",
    "c-asyncio": "#c7c7c7",
    "d": "#dd8452",
    "d-log-none": "#55a868",
    "d-log-denials": "#937860",
    "d-log-all": "#c44e52",
}


def wrk_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a picture shows: wrk's, of the configurations in COLOURS."""
    return [r for r in result["rows"] if r["tool"] == "wrk" and r["config"] in COLOURS]


def grouped(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Scenarios (in the order they ran) and configurations (in COLOURS order) present."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    configs = [c for c in COLOURS if any(r["config"] == c for r in rows)]
    return scenarios, configs


def draw(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = wrk_rows(result)
    if not rows:
        raise SystemExit("no wrk rows to draw")
    scenarios, configs = grouped(rows)
    by_key = {(r["config"], r["scenario"]): r for r in rows}
    labels = {
        r["config"]: r["config_label"] + (f" [{r['loop']}]" if r["loop"] != "-" else "")
        for r in rows
    }
    figure, (rate_axis, p99_axis) = plt.subplots(2, 1, figsize=(14, 8), sharex=True)
    width = 0.8 / len(configs)
    for index, config in enumerate(configs):
        xs, rates, p99s, hatches = [], [], [], []
        for position, scenario in enumerate(scenarios):
            row = by_key.get((config, scenario))
            if row is None:
                continue
            xs.append(position - 0.4 + width * (index + 0.5))
            rates.append(row["rate"])
            p99s.append((row["p99_s"] or 0.0) * 1e3)
            hatches.append("" if row["is_as_expected"] else "//")
        colour = COLOURS[config]
        for axis, values in ((rate_axis, rates), (p99_axis, p99s)):
            bars = axis.bar(xs, values, width, color=colour, label=labels[config])
            for bar, hatch in zip(bars, hatches, strict=True):
                bar.set_hatch(hatch)
    rate_axis.set_ylabel("req/s (higher is better)")
    p99_axis.set_ylabel("p99 ms (lower is better)")
    p99_axis.set_xticks(range(len(scenarios)))
    p99_axis.set_xticklabels(scenarios, rotation=20, ha="right")
    rate_axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    machine = result.get("machine", {})
    settings = result.get("settings", {})
    rate_axis.set_title(
        f"wrk -c50 through Envoy (1 worker), {settings.get('duration_s', '?')} s per bar; "
        f"{machine.get('cpu', '')} x{machine.get('cores', '?')}, {machine.get('date', '')}",
        fontsize=9,
    )
    for axis in (rate_axis, p99_axis):
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="bench/run.py's JSON")
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args(argv)
    draw(json.loads(args.results.read_text()), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

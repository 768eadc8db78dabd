"""Draw the dashboard's panels from a real run: `make pictures` (needs the `pictures` extra,
matplotlib, and Debian's prometheus).

    .venv/bin/python -m monitoring.render monitoring/dashboard.png

The run is monitoring/live.py's, the one tests/e2e/test_prometheus.py checks: the rig's two
Envoys and two extauthz (the sidecar's with --workers 2), a real Prometheus scraping them
every second, traffic for a while, then a good and a bad reload and the JWKS server stopped,
and traffic again with a burst of expired tokens. Each panel is drawn from its own query in
monitoring/extauthz-dashboard.json, asked of that Prometheus over the run.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from extauthz.rig.demo import http_get
from extauthz.rig.tokens import invalid_tokens
from monitoring.live import (
    MonitoredRig,
    PanelQuery,
    Prometheus,
    Series,
    dashboard_queries,
    legend,
    make_trouble,
    traffic_round,
)

CALM_SECONDS = 20.0
TROUBLE_SECONDS = 25.0
RATE_WINDOW = "5s"  # the run is short: a window of a few scrapes shows the changes
COLUMNS = 3


def _send(rig: MonitoredRig, stop: threading.Event, storm: threading.Event) -> None:
    expired = {"authorization": f"Bearer {invalid_tokens(rig.demo_token)['expired'][0]}"}
    while not stop.wait(0.05):
        traffic_round(rig)
        if storm.is_set():  # a client whose token ran out, retrying
            for _ in range(4):
                http_get(f"{rig.gateway_url}/api/v1/products/1", expired)


def _names(rig: MonitoredRig) -> dict[str, str]:
    """Loopback addresses in labels, as the picture names them."""
    names = dict(rig.metrics_targets)
    names[f"http://127.0.0.1:{rig.ports.jwks}/get_jwks"] = "jwks-server/get_jwks"
    names[rig.dead_jwks_uri] = "no-answer/jwks"
    return names


def _label(query: PanelQuery, series: Series, names: dict[str, str]) -> str:
    text = legend(query.legend, series.labels)
    for raw, name in names.items():
        text = text.replace(raw, name)
    return re.sub(r"\s+", " ", text).strip()


def render(out: Path, workdir: Path, prometheus_binary: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with MonitoredRig(workdir) as rig:
        targets = list(rig.metrics_targets)
        rules = Path(__file__).resolve().parent / "extauthz-rules.yaml"
        with Prometheus(prometheus_binary, workdir, targets, [rules]) as prometheus:
            stop, storm = threading.Event(), threading.Event()
            sender = threading.Thread(target=_send, args=(rig, stop, storm), daemon=True)
            started = time.time()
            sender.start()
            try:
                time.sleep(CALM_SECONDS)  # a script drawing a run: it waits for the run
                make_trouble(rig)
                storm.set()
                time.sleep(TROUBLE_SECONDS / 2)
                storm.clear()
                time.sleep(TROUBLE_SECONDS / 2)
            finally:
                stop.set()
                sender.join(10)
            ended = time.time()
            trouble_at = started + CALM_SECONDS
            queries = list(dashboard_queries(__rate_interval=RATE_WINDOW, __range="1h"))
            answers = [
                prometheus.query(q.expr)
                if q.kind == "bargauge"
                else prometheus.query_range(q.expr, started, ended, 1)
                for q in queries
            ]
            names = _names(rig)

    panels: dict[str, list[tuple[PanelQuery, list[Series]]]] = {}
    for query, found in zip(queries, answers, strict=True):
        panels.setdefault(query.panel, []).append((query, found))
    rows = -(-len(panels) // COLUMNS)
    figure, axes = plt.subplots(rows, COLUMNS, figsize=(15, 3.4 * rows), dpi=72)
    for ax, (title, drawn) in zip(axes.flat, panels.items(), strict=False):
        ax.set_title(title, fontsize=11, loc="left")
        ax.tick_params(labelsize=8)
        for query, series_list in drawn:
            if query.kind == "bargauge":
                bars = {_label(query, s, names): float(s.values[-1][1]) for s in series_list}
                ax.barh(list(bars), list(bars.values()), height=0.5, color="#d44a3a")
                ax.set_ylim(-1, max(len(bars), 3))
                ax.invert_yaxis()
                ax.set_xlabel("denials in the run", fontsize=8)
                continue
            for series in series_list:
                xs = [float(t) - started for t, _ in series.values]
                ys = [float(v) for _, v in series.values]
                ax.plot(xs, ys, label=_label(query, series, names), linewidth=1.4)
            ax.axvline(trouble_at - started, color="grey", linestyle=":", linewidth=1)
            ax.set_xlabel("seconds (dotted: reloads and JWKS outage)", fontsize=8)
        if any(query.kind != "bargauge" for query, _ in drawn):
            ax.legend(fontsize=7, loc="best", framealpha=0.6)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.suptitle("extauthz dashboard, drawn from a real Prometheus (make pictures)", x=0.01,
                    ha="left", fontsize=13)  # fmt: skip
    figure.tight_layout()
    figure.savefig(out, format="png", pil_kwargs={"optimize": True})
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.render",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, nargs="?", default=Path("monitoring/dashboard.png"))
    args = parser.parse_args(argv)
    binary = shutil.which("prometheus")
    if binary is None:
        print("no prometheus binary: `make tools` installs Debian's", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="extauthz-pictures-") as workdir:
        render(args.out, Path(workdir), binary)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

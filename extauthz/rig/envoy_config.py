"""Point a shipped Envoy config (envoy/*.yaml) at loopback ports, changing nothing else, so
the rig runs exactly the configuration users deploy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def localize(
    config_file: Path,
    listener_port: int,
    admin_port: int,
    clusters: dict[str, int],
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(config_file.read_text())
    config["admin"]["address"]["socket_address"] = {"address": host, "port_value": admin_port}
    listeners = config["static_resources"]["listeners"]
    if len(listeners) != 1:
        raise ValueError(f"{config_file}: the rig expects exactly one listener")
    listeners[0]["address"]["socket_address"] = {"address": host, "port_value": listener_port}
    seen = set()
    for cluster in config["static_resources"]["clusters"]:
        name = cluster["name"]
        if name not in clusters:
            continue
        seen.add(name)
        cluster["type"] = "STATIC"
        for group in cluster["load_assignment"]["endpoints"]:
            for endpoint in group["lb_endpoints"]:
                endpoint["endpoint"]["address"]["socket_address"] = {
                    "address": host,
                    "port_value": clusters[name],
                }
    missing = set(clusters) - seen
    if missing:
        raise ValueError(f"{config_file}: no cluster named {', '.join(sorted(missing))}")
    return config


def write_localized(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path

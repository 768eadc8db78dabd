"""YAML that costs a naive loader dearly, for the configuration-bounds tests."""

from __future__ import annotations


def alias_bomb(paths: int = 100, operations: int = 300, rules: int = 3000) -> str:
    """An AuthorizationPolicy whose rules are aliases of a rule whose `to` are aliases of an
    operation with many paths: about 25 KB on disk, paths * operations * rules (90 million
    by default) path strings for a reader that walks the resource with aliases expanded
    (the YAML "billion laughs", shaped as Istio would read it)."""
    path_list = ", ".join(f"/p{i}" for i in range(paths))
    return (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: bomb, namespace: istio-system}\n"
        "x-op: &op {operation: {paths: [" + path_list + "]}}\n"
        "x-rule: &rule {to: [" + ", ".join(["*op"] * operations) + "]}\n"
        "spec:\n  action: DENY\n  rules: [" + ", ".join(["*rule"] * rules) + "]\n"
    )

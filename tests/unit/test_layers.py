"""Dependencies point down: a module imports only from its own layer or the layers below.

The layers, top first (a module belongs to the layer of its longest matching prefix):
- edges: gRPC, HTTP, files, processes, the command line; everything may be used here;
- core: one decision from compiled configuration (decide, the memo, compile, store);
- authn / authz: authentication and authorization, each unaware of the other's insides;
- reading: YAML into frozen resources, workload scoping;
- leaf: resources, limits, errors, request attributes, JOSE primitives (statuses, JWT and
  JWKS parsing), which import nothing of extauthz above them.
The test reads every module's imports with `ast` (imports under TYPE_CHECKING included: a
type is a dependency too) and names each upward one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "extauthz"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("edges", (
        "extauthz.server", "extauthz.cli", "extauthz.__main__", "extauthz.commands",
        "extauthz.rig", "extauthz.authn.jwks_fetcher", "extauthz.config.watch",
        "extauthz.config.lint",
    )),
    ("core", (
        "extauthz.decision", "extauthz.decision_memo", "extauthz.summary", "extauthz.snapshot",
        "extauthz.native",
    )),
    ("authn-authz", ("extauthz.authn", "extauthz.authz")),
    ("reading", ("extauthz.config.parse", "extauthz.config.workload", "extauthz.config.changes")),
    ("leaf", (
        "extauthz.config.resources", "extauthz.config.limits", "extauthz.config.documents",
        "extauthz.attributes", "extauthz.bounded", "extauthz.authn.status", "extauthz.authn.jwt",
        "extauthz.authn.keys", "extauthz.config", "extauthz",
    )),
)  # fmt: skip
# authn and authz share a layer but not their insides: authz reads only the result type.
SIDEWAYS_ALLOWED = {("extauthz.authz", "extauthz.authn.result")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The index of the module's layer (0 is the top); the longest matching prefix wins."""
    best, best_length = len(LAYERS), -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "extauthz" or name.startswith("extauthz.")}


def is_upward(module: str, imported: str) -> bool:
    """Does `module` importing `imported` break the layering?"""
    own, theirs = layer_of(module), layer_of(imported)
    if theirs != own or LAYERS[own][0] != "authn-authz":
        return theirs < own
    if module.split(".")[1] == imported.split(".")[1]:
        return False
    return not any(module.startswith(a) and imported == b for a, b in SIDEWAYS_ALLOWED)


def upward_imports() -> list[str]:
    return [
        f"{module_name(path)} ({LAYERS[layer_of(module_name(path))][0]}) imports {imported} "
        f"({LAYERS[min(layer_of(imported), len(LAYERS) - 1)][0]})"
        for path in sorted(PACKAGE.rglob("*.py"))
        for imported in sorted(imports_of(path))
        if is_upward(module_name(path), imported)
    ]


def test_every_module_has_a_layer() -> None:
    unplaced = [
        module_name(p) for p in PACKAGE.rglob("*.py") if layer_of(module_name(p)) == len(LAYERS)
    ]
    assert unplaced == []


def test_dependencies_point_down() -> None:
    assert upward_imports() == []


@pytest.mark.parametrize(
    ("module", "imported", "upward"),
    [
        ("extauthz.config.resources", "extauthz.snapshot.compile", True),
        ("extauthz.config.parse", "extauthz.authz.rules", True),
        ("extauthz.authz.rules", "extauthz.authn.providers", True),
        ("extauthz.authn.verify", "extauthz.authz.evaluate", True),
        ("extauthz.decision", "extauthz.server.grpc_service", True),
        ("extauthz.snapshot.compile", "extauthz.server.app", True),
        ("extauthz.authn.keys", "extauthz.authn.providers", True),
        ("extauthz.server.grpc_service", "extauthz.decision", False),
        ("extauthz.authz.rules", "extauthz.authn.result", False),
        ("extauthz.authz.rules", "extauthz.config.parse", False),
        ("extauthz.config.parse", "extauthz.authn.keys", False),
    ],
)  # fmt: skip
def test_the_rule_itself(module: str, imported: str, upward: bool) -> None:
    # What the checker calls upward, so that the test above can fail.
    assert is_upward(module, imported) is upward

"""YAML that costs a naive loader dearly, for the configuration-bounds tests."""

from __future__ import annotations


def alias_bomb(levels: int = 9) -> str:
    """Each level lists the one before nine times: 9**levels paths from a few hundred bytes
    (the "billion laughs" of YAML)."""
    lines = ["a0: &a0 [/x, /x, /x, /x, /x, /x, /x, /x, /x]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"

"""What a reload changed: resources added, removed and modified, by kind, namespace and name.

A resource is identified as Kubernetes identifies it (kind, namespace, name); it is modified
when anything but where it was read from (file, document) differs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from extauthz.config.resources import ConfigSet, Resource


def _identity(resource: Resource) -> str:
    return f"{type(resource).__name__} {resource.meta.ref}"


def _content(resource: Resource) -> tuple[object, ...]:
    return tuple(getattr(resource, f.name) for f in fields(resource) if f.name != "origin")


def _by_identity(config: ConfigSet) -> dict[str, tuple[object, ...]]:
    resources: tuple[Resource, ...] = (
        *config.request_authentications,
        *config.authorization_policies,
    )
    return {_identity(r): _content(r) for r in resources}


@dataclass(frozen=True, slots=True)
class Changes:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    def __str__(self) -> str:
        parts = [
            f"{word} {', '.join(names)}"
            for word, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("modified", self.modified),
            )
            if names
        ]
        return "; ".join(parts) or "no resource changed"


def changes(old: ConfigSet | None, new: ConfigSet) -> Changes:
    before = _by_identity(old) if old is not None else {}
    after = _by_identity(new)
    return Changes(
        added=tuple(sorted(set(after) - set(before))),
        removed=tuple(sorted(set(before) - set(after))),
        modified=tuple(sorted(k for k in set(before) & set(after) if before[k] != after[k])),
    )

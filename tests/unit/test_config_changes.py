"""What a reload logs as changed: resources by kind, namespace and name."""

from __future__ import annotations

from extauthz.config.changes import changes
from extauthz.config.parse import parse_documents


def policy(name: str, path: str = "/admin", namespace: str = "foo") -> str:
    return (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  action: DENY\n  rules:\n  - to:\n    - operation: {{paths: [{path}]}}\n"
    )


AUTHN = (
    "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
    "metadata: {name: jwt, namespace: foo}\nspec:\n  jwtRules:\n  - issuer: i\n"
    "    jwksUri: https://idp.example/keys\n"
)


def test_added_removed_and_modified_by_kind_namespace_and_name() -> None:
    old = parse_documents("---\n".join([policy("a"), policy("b"), AUTHN]), "old.yaml")
    new = parse_documents("---\n".join([policy("a", "/root"), policy("c"), AUTHN]), "new.yaml")
    found = changes(old, new)
    assert found.added == ("AuthorizationPolicy foo/c",)
    assert found.removed == ("AuthorizationPolicy foo/b",)
    assert found.modified == ("AuthorizationPolicy foo/a",)
    assert str(found) == (
        "added AuthorizationPolicy foo/c; removed AuthorizationPolicy foo/b; "
        "modified AuthorizationPolicy foo/a"
    )


def test_moving_a_resource_to_another_file_or_place_is_no_change() -> None:
    old = parse_documents("---\n".join([policy("a"), AUTHN]), "one.yaml")
    new = parse_documents("---\n".join([AUTHN, policy("a")]), "two.yaml")
    assert not changes(old, new)
    assert str(changes(old, new)) == "no resource changed"


def test_the_same_name_in_another_namespace_is_another_resource() -> None:
    old = parse_documents(policy("a"), "f.yaml")
    new = parse_documents(policy("a", namespace="bar"), "f.yaml")
    found = changes(old, new)
    assert (found.added, found.removed) == (
        ("AuthorizationPolicy bar/a",),
        ("AuthorizationPolicy foo/a",),
    )


def test_the_first_load_adds_everything() -> None:
    assert changes(None, parse_documents(AUTHN, "f.yaml")).added == (
        "RequestAuthentication foo/jwt",
    )

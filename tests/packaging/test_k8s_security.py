"""k8s/: every container but the third-party sample apps is locked down, every pod is confined,
and every container's resource requests fit under its limits."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from tests.support.manifests import CONTAINERS, HARDENED, Container, ids


@pytest.mark.parametrize("container", HARDENED, ids=ids(HARDENED))
def test_container_is_locked_down(container: Container) -> None:
    context = container.spec["securityContext"]
    assert context["runAsNonRoot"] is True
    assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert not context.get("privileged")


@pytest.mark.parametrize("container", CONTAINERS, ids=ids(CONTAINERS))
def test_pod_is_confined(container: Container) -> None:
    pod = container.pod
    seccomp = container.spec["securityContext"].get("seccompProfile") or pod["securityContext"].get(
        "seccompProfile"
    )
    assert seccomp == {"type": "RuntimeDefault"}
    assert container.spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["automountServiceAccountToken"] is False, "nothing here talks to the API server"
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))


def _quantity(value: str | int) -> Fraction:
    number = re.fullmatch(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>m|k|M|G|Ki|Mi|Gi)?", str(value))
    assert number, f"not a quantity: {value}"
    units = {
        "m": Fraction(1, 1000),
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
    }
    return Fraction(number["n"]) * units.get(number["unit"] or "", 1)


@pytest.mark.parametrize("container", CONTAINERS, ids=ids(CONTAINERS))
def test_container_sets_requests_and_limits(container: Container) -> None:
    resources = container.spec["resources"]
    for resource in ("cpu", "memory"):
        request, limit = resources["requests"][resource], resources["limits"][resource]
        assert _quantity(request) <= _quantity(limit), f"{resource}: {request} > {limit}"

"""The names of a TLS peer as Envoy's RBAC matches a principal against them: every URI SAN,
then every DNS SAN, then the subject (AuthenticatedMatcher). ext_authz sends only the first
URI SAN as `source.principal`; with `include_peer_certificate` it also sends the whole
certificate (URL-encoded PEM), which is read here. Certificates repeat (one per client), so
each is parsed once and its names remembered."""

from __future__ import annotations

from urllib.parse import unquote

from cryptography import x509

from extauthz.bounded import BoundedCache

# A client certificate is 1 to 3 KiB; a larger one is read every time, never kept.
_MAX_CERTIFICATE_CHARS = 16 * 1024


class PeerNames:
    """Names by certificate, bounded; owned by the service."""

    def __init__(self, max_entries: int = 1024) -> None:
        self._names: BoundedCache[str, tuple[str, ...]] = BoundedCache(
            max_entries, max_entry_cost=_MAX_CERTIFICATE_CHARS
        )

    def of(self, certificate: str, principal: str) -> tuple[str, ...]:
        """The peer's names; `(principal,)` (or none) when no certificate came or it does not
        parse, which is what ext_authz reported."""
        if not certificate:
            return (principal,) if principal else ()
        found = self._names.get(certificate)
        if found is None:
            found = certificate_names(certificate) or ((principal,) if principal else ())
            self._names.put(certificate, found, cost=len(certificate))
        return found


def certificate_names(certificate: str) -> tuple[str, ...]:
    """URI SANs, DNS SANs and the RFC 4514 subject of a URL-encoded PEM certificate; () when
    it does not parse."""
    try:
        parsed = x509.load_pem_x509_certificate(unquote(certificate).encode())
    except ValueError:
        return ()
    names: list[str] = []
    try:
        sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        names += sans.get_values_for_type(x509.UniformResourceIdentifier)
        names += sans.get_values_for_type(x509.DNSName)
    subject = parsed.subject.rfc4514_string()
    if subject:
        names.append(subject)
    return tuple(names)

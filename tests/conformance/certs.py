"""Certificates for the TLS cases: one CA, the listeners' server certificate, and client
certificates whose SANs say who the peer is (a SPIFFE URI as Istio issues them, or the odd
shapes a mesh never issues but a client can present: no SAN at all, a DNS SAN only, two URI
SANs).

Made once per process (EC P-256 keys are cheap) and cached by what the certificate says, so
a run holds a small pool however many requests present them. Both Envoys validate clients
against `ca_pem()`; the client side reads the PEM files `client_context` writes."""

from __future__ import annotations

import datetime
import functools
import itertools
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID_FROM = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
_VALID_UNTIL = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)
SERVER_NAMES = ("example.com", "*.example.com", "other.org")


@dataclass(frozen=True)
class ClientCert:
    """What a client certificate says of its holder: the URI SANs (Envoy's principal is the
    first; RBAC's `authenticated` tries each), DNS SANs and the subject's common name."""

    uris: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    common_name: str = "conformance-client"

    @classmethod
    def spiffe(cls, trust_domain: str, namespace: str, account: str) -> ClientCert:
        return cls(uris=(f"spiffe://{trust_domain}/ns/{namespace}/sa/{account}",))

    def describe(self) -> str:
        parts = [*self.uris, *(f"dns:{name}" for name in self.dns)]
        return ", ".join(parts) or f"CN={self.common_name} (no SAN)"


DEFAULT_CLIENT = ClientCert.spiffe("cluster.local", "default", "sleep")


def _name(common_name: str) -> x509.Name:
    # The common name alone: a certificate without SANs is then named by exactly
    # "CN=<common_name>" (Envoy's principal for ext_authz, RBAC's last resort).
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class _Issued:
    cert_pem: bytes
    key_pem: bytes


@functools.cache
def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("extauthz conformance CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_VALID_FROM)
        .not_valid_after(_VALID_UNTIL)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(common_name: str, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier) -> _Issued:
    ca_cert, ca_key = _ca()
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_VALID_FROM)
        .not_valid_after(_VALID_UNTIL)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return _Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def ca_pem() -> str:
    return _ca()[0].public_bytes(serialization.Encoding.PEM).decode()


@functools.cache
def server() -> _Issued:
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVER_NAMES]
    return _issue("conformance-server", sans, ExtendedKeyUsageOID.SERVER_AUTH)


@functools.cache
def _client(cert: ClientCert) -> _Issued:
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in cert.uris]
    sans += [x509.DNSName(name) for name in cert.dns]
    return _issue(cert.common_name, sans, ExtendedKeyUsageOID.CLIENT_AUTH)


@functools.cache
def _directory() -> Path:
    return Path(tempfile.mkdtemp(prefix="extauthz-conformance-certs-"))


_FILE_NUMBERS = itertools.count()


@functools.cache
def client_context(cert: ClientCert) -> ssl.SSLContext:
    """A client context presenting `cert`, trusting the CA (server names unchecked: the
    SNI a request sends is whatever the case is about, not the certificate's name)."""
    issued = _client(cert)
    path = _directory() / f"client-{next(_FILE_NUMBERS)}.pem"
    path.write_bytes(issued.cert_pem + issued.key_pem)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem())
    context.check_hostname = False
    context.load_cert_chain(path)
    return context


def downstream_tls_context() -> dict[str, object]:
    """The listeners' transport socket: TLS with the server certificate, client certificates
    required and validated against the CA (istiod's inbound mTLS, with our CA)."""
    issued = server()
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
            ".DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [
                    {
                        "certificate_chain": {"inline_string": issued.cert_pem.decode()},
                        "private_key": {"inline_string": issued.key_pem.decode()},
                    }
                ],
                "validation_context": {"trusted_ca": {"inline_string": ca_pem()}},
            },
        },
    }

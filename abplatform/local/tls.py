"""A self-signed TLS certificate for the local stand-in of fal's cloud.

``fal_client`` always speaks HTTPS (``https://{FAL_RUN_HOST}/...``). Serving the stand-in
with this certificate and pointing ``SSL_CERT_FILE`` at it makes httpx (and so fal_client)
trust it with no code change. The certificate is its own CA (``basicConstraints: CA``,
which OpenSSL needs to accept a self-signed leaf from a trust file) and names
``127.0.0.1``, ``::1`` and ``localhost``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CERT_FILE",
    "KEY_FILE",
    "LocalCertificate",
    "ensure_local_certificate",
    "ensure_trust_bundle",
]

CERT_FILE = "localhost.crt"
KEY_FILE = "localhost.key"

#: DNS names and IP addresses the certificate is valid for.
DNS_NAMES = ("localhost",)
IP_ADDRESSES = ("127.0.0.1", "::1")

VALIDITY = dt.timedelta(days=365)
#: A certificate expiring within this margin is replaced.
RENEW_BEFORE = dt.timedelta(days=7)


@dataclass(frozen=True)
class LocalCertificate:
    """Paths of a PEM certificate and its unencrypted PEM private key (mode 0600)."""

    cert_path: Path
    key_path: Path


def _is_usable(cert_path: Path, key_path: Path) -> bool:
    """Whether the pair exists, parses, matches, covers every SAN and is not about to expire."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return False
    now = dt.datetime.now(dt.UTC)
    if not (cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    names = set(san.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return constraints.ca and names >= set(DNS_NAMES) and ips >= set(IP_ADDRESSES)


def _generate() -> tuple[bytes, bytes]:
    """A new P-256 key and a self-signed CA certificate for it, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "abplatform local fal stand-in"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "abplatform (local development)"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in DNS_NAMES]
                + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in IP_ADDRESSES]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_local_certificate(directory: Path) -> LocalCertificate:
    """Return the certificate in ``directory``, creating or renewing it if needed.

    An existing pair is reused when it parses, the key matches, it names every required
    host and it is valid for at least ``RENEW_BEFORE`` more; otherwise a new one (valid
    ``VALIDITY``) replaces it. Files are written atomically; the key with mode 0600.

    Args:
        directory: folder for ``localhost.crt`` and ``localhost.key`` (created if missing).

    Returns:
        The pair's paths. Point ``SSL_CERT_FILE`` at ``cert_path`` for clients; give
        both to the server (uvicorn ``ssl_certfile`` / ``ssl_keyfile``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if not _is_usable(cert_path, key_path):
        cert_pem, key_pem = _generate()
        # Key first: a reader never sees a new certificate with an old key for long.
        _write_atomic(key_path, key_pem, 0o600)
        _write_atomic(cert_path, cert_pem, 0o644)
    return LocalCertificate(cert_path=cert_path, key_path=key_path)


def ensure_trust_bundle(certificate: LocalCertificate, dest: Path | None = None) -> Path:
    """Write a CA bundle trusting ``certificate`` *and* the usual public roots (certifi).

    Pointing ``SSL_CERT_FILE`` at the bare certificate makes httpx trust nothing else, so
    a process could no longer reach any real HTTPS host; this bundle avoids that.

    Args:
        certificate: the local certificate.
        dest: bundle path; default ``ca-bundle.pem`` next to the certificate.

    Returns:
        The bundle's path (rewritten atomically only when its content changes).
    """
    import certifi

    dest = Path(dest) if dest is not None else certificate.cert_path.with_name("ca-bundle.pem")
    local = certificate.cert_path.read_bytes()
    content = local.rstrip(b"\n") + b"\n" + Path(certifi.where()).read_bytes()
    try:
        unchanged = dest.read_bytes() == content
    except OSError:
        unchanged = False
    if not unchanged:
        _write_atomic(dest, content, 0o644)
    return dest

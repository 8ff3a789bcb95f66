"""TLS material for the server: a local CA kept across restarts (devices keep trusting
it), server certificates for this host and its LAN addresses, and the broken certificates
TLS tests need (expired, self-signed, for another host). trustme and cryptography are
imported lazily: plain http needs no third-party package."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refserver.tokens import write_private

if TYPE_CHECKING:
    import trustme


@dataclass
class ServerTls:
    """What `ensure_tls` made: the files a device and the server need."""

    ca_der: Path  # what a device's ca_file gets
    ca_pem: Path
    server_pem: Path  # certificate chain and private key in one file


def lan_ipv4_addresses() -> list[str]:
    """Non-loopback IPv4 addresses a board on the LAN may use to reach this host."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(str(info[4][0]))
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("192.0.2.1", 9))  # a UDP connect sends nothing; it picks the route
        found.add(udp.getsockname()[0])
    return sorted(a for a in found if a != "0.0.0.0" and not ipaddress.ip_address(a).is_loopback)


def load_or_create_ca(directory: str | os.PathLike[str]) -> trustme.CA:
    """The local CA in `directory`, created once: devices provisioned with its ca.der must
    keep trusting every later server certificate."""
    import trustme  # lazily: plain http needs no third-party package

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "ca.pem", folder / "ca.key.pem"
    if cert_path.exists() and key_path.exists():
        ca = trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
    else:
        ca = trustme.CA(organization_name="refserver local CA")
        write_private(key_path, ca.private_key_pem.bytes())
        cert_path.write_bytes(ca.cert_pem.bytes())
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text())
    (folder / "ca.der").write_bytes(der)
    return ca


def ensure_tls(
    directory: str | os.PathLike[str], sans: Iterable[str] = (), lan: bool = False
) -> ServerTls:
    """CA (reused) plus a fresh server certificate for localhost, 127.0.0.1 and `sans`."""
    folder = Path(directory)
    ca = load_or_create_ca(folder)
    hosts = ["localhost", "127.0.0.1", *sans, *(lan_ipv4_addresses() if lan else [])]
    leaf = ca.issue_cert(*dict.fromkeys(hosts))
    server_pem = folder / "server.pem"
    write_private(server_pem, leaf.private_key_and_cert_chain_pem.bytes())
    return ServerTls(folder / "ca.der", folder / "ca.pem", server_pem)


def make_tls_files(
    directory: str | os.PathLike[str],
    hosts: Iterable[str],
    *,
    expired: bool = False,
    self_signed: bool = False,
) -> tuple[Path, Path, Path]:
    """(ca_der, certfile, keyfile) for tests. ca_der is the CA a device trusts; the server
    certificate is for `hosts` (pass another name for a wrong-host test), expired if asked,
    or self-signed, i.e. not issued by that CA at all."""
    folder = Path(directory)
    ca = load_or_create_ca(folder)
    names = list(hosts)
    certfile, keyfile = folder / "server-cert.pem", folder / "server-key.pem"
    if self_signed:
        cert_pem, key_pem = _self_signed(names)
    else:
        now = datetime.datetime.now(datetime.timezone.utc)
        window: dict[str, Any] = {}
        if expired:
            window = {"not_before": now - datetime.timedelta(days=30),
                      "not_after": now - datetime.timedelta(days=1)}
        leaf = ca.issue_cert(*names, **window)
        cert_pem = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        key_pem = leaf.private_key_pem.bytes()
    certfile.write_bytes(cert_pem)
    write_private(keyfile, key_pem)
    return folder / "ca.der", certfile, keyfile


def _self_signed(hosts: list[str]) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem

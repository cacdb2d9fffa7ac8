"""``devicelink serve --ssl-certfile --ssl-keyfile`` terminates TLS itself (issue 16, item
5), so approving from a phone on the local network needs no proxy: the server answers
over https, and the links it hands out are https ones."""

from __future__ import annotations

import ipaddress
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.processes import clean_env, run_devicelink
from tests.support.servers import Launcher

pytestmark = pytest.mark.slow


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (valid whatever the day), and
    that key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2000, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(9999, 12, 31, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(identifier, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(identifier),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def wait_for_https(http: httpx.Client, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "no answer over https"
        time.sleep(0.1)


def test_serve_answers_over_https_with_its_own_certificate(
    tmp_path: Path, workdir: Path, launch: Launcher
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    server = launch(
        "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
        env=clean_env(), cwd=workdir, wait_for=None,
    )  # fmt: skip
    origin = f"https://127.0.0.1:{server.port}"
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=origin, verify=trust, timeout=5) as http:
        wait_for_https(http)
        # No PUBLIC_URL: the listening address, with the scheme served.
        metadata = http.get("/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == origin
        flow = http.post("/oauth/device/authorize", data={"client_id": "devicelink-cli"})
        assert flow.status_code == 200, flow.text
        assert flow.json()["verification_uri"] == f"{origin}/oauth/device/verify"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)


def test_a_certificate_without_its_key_is_refused(tmp_path: Path, workdir: Path) -> None:
    cert, _ = self_signed_certificate(tmp_path)
    result = run_devicelink("serve", "--ssl-certfile", str(cert), env=clean_env(), cwd=workdir)
    assert result.returncode == 2
    assert "--ssl-certfile and --ssl-keyfile go together" in result.stderr

"""Fixtures of the security tests: a test certificate authority, and a private Mosquitto started from deploy/'s own
configuration (TLS listener, password file, ACL) on a free loopback port: never the shared broker."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class CertFiles:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it, as PEM files."""

    ca: Path
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    encoding, form = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, form, serialization.NoEncryption())


def make_ca(folder: Path, name: str = "amiflow test CA") -> CertFiles:
    """A fresh CA (EC P-256) and a server certificate for 127.0.0.1 and localhost, valid for a day."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    out = CertFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    out.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(_pem_key(key))
    return out


@pytest.fixture
def test_ca(tmp_path: Path) -> CertFiles:
    return make_ca(tmp_path / "certs")


def deploy_mosquitto_conf(port: int, ca: CertFiles, passwd: Path, data: Path) -> str:
    """deploy/mosquitto/mosquitto.conf with its listener on ``port`` (loopback) and its paths in the test's folder;
    every other line (TLS version, anonymous off, ACL, inflight limits) as shipped."""
    paths = {
        "cafile": ca.ca,
        "certfile": ca.cert,
        "keyfile": ca.key,
        "password_file": passwd,
        "acl_file": DEPLOY / "mosquitto/acl.conf",
        "persistence_location": f"{data}/",
    }
    lines = []
    for line in (DEPLOY / "mosquitto/mosquitto.conf").read_text().splitlines():
        word = line.split(" ", 1)[0]
        if word == "listener":
            line = f"listener {port} 127.0.0.1"
        elif word in paths:
            line = f"{word} {paths[word]}"
        lines.append(line)
    lines.append("user root")  # the test runs as root: keep mosquitto from switching to a user that cannot read tmp
    return "\n".join(lines) + "\n"


@dataclass
class SecureBroker:
    port: int
    ca: CertFiles
    passwd: Path
    process: subprocess.Popen[bytes]
    log: Path


def wait_tls(port: int, ca: Path, timeout_s: float = 10.0) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_broker(tmp_path: Path, ca: CertFiles, passwd: Path) -> SecureBroker:
    """A private mosquitto on deploy/'s configuration with ``passwd`` (the caller stops it)."""
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed on this machine (apt-get install mosquitto)")
    port = free_port()
    data = tmp_path / "mosquitto-data"
    data.mkdir(exist_ok=True)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(deploy_mosquitto_conf(port, ca, passwd, data))
    log = tmp_path / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf), "-v"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_tls(port, ca.ca)
    except OSError:
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"mosquitto did not start on {port}: {log.read_text()[-2000:]}") from None
    return SecureBroker(port, ca, passwd, proc, log)


@pytest.fixture
def broker_factory(tmp_path: Path, test_ca: CertFiles) -> Iterator[object]:
    started: list[SecureBroker] = []

    def start(passwd: Path) -> SecureBroker:
        broker = start_broker(tmp_path, test_ca, passwd)
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.process.terminate()
        try:
            broker.process.wait(10)
        except subprocess.TimeoutExpired:
            broker.process.kill()
            broker.process.wait(5)

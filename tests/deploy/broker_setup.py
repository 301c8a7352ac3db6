"""Running the PRODUCTION configuration of broker/ on a real Mosquitto, in a test.

The configuration is ``broker/mosquitto.conf`` with only what cannot be the same on a test
machine replaced: the listener's port and interface, file paths, the log destination and the
``user`` (started as root, Mosquitto would switch to user ``mosquitto``, which cannot write in
our temporary folder). The commented TLS block of the file is switched on with a certificate
made here for a CA made here. The ACL is ``broker/acl`` itself, and the password file is built
by ``broker/build-passwd.sh``, as the containers build it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agents._process import wait_for_port
from agents.broker.managed import find_mosquitto
from agents.bus.url import BrokerUrl

ROOT = Path(__file__).parents[2]
BROKER_DIR = ROOT / "broker"
PASSWORDS = {
    "coordinator": "coordinator-secret",
    "agent": "agent-secret",
    "monitor": "monitor-secret",
}


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True, slots=True)
class ProductionBroker:
    host: str
    port: int
    tls_port: int
    tls: TlsFiles
    folder: Path

    def url(self, user: str | None, password: str | None = None) -> BrokerUrl:
        """The plain listener, as ``user`` with its password (or the one given)."""
        secret = password if password is not None or user is None else PASSWORDS[user]
        return BrokerUrl(host=self.host, port=self.port, username=user, password=secret)

    def tls_url(self, user: str) -> BrokerUrl:
        """The TLS listener (``mqtts://``), as ``user``."""
        return BrokerUrl(
            host=self.host, port=self.tls_port, tls=True, username=user, password=PASSWORDS[user]
        )

    def log(self) -> str:
        return (self.folder / "mosquitto.log").read_text(errors="replace")


def make_tls(folder: Path, host: str) -> TlsFiles:
    """A CA and a server certificate for ``host`` (an IP address), signed by that CA."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Agent Society test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mosquitto")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.crt", folder / "tls.crt", folder / "tls.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.server_key.chmod(0o600)
    return files


def render_production_config(
    folder: Path, *, host: str, port: int, tls_port: int, tls: TlsFiles
) -> str:
    """broker/mosquitto.conf with the TLS block on, and test ports and paths."""
    text = (BROKER_DIR / "mosquitto.conf").read_text()
    tls_block = re.search(r"^# tls-begin\n(.*?)^# tls-end\n", text, re.DOTALL | re.MULTILINE)
    assert tls_block, "broker/mosquitto.conf has no '# tls-begin' ... '# tls-end' block"
    enabled = "".join(line[1:] + "\n" for line in tls_block.group(1).splitlines())
    text = text.replace(tls_block.group(1), enabled)
    replacements = {
        r"^listener 1883 0\.0\.0\.0$": f"listener {port} {host}",
        r"^listener 8883 0\.0\.0\.0$": f"listener {tls_port} {host}",
        r"^certfile /mosquitto/tls/tls\.crt$": f"certfile {tls.server_cert}",
        r"^keyfile /mosquitto/tls/tls\.key$": f"keyfile {tls.server_key}",
        r"^password_file /mosquitto/auth/passwd$": f"password_file {folder / 'passwd'}",
        r"^acl_file /mosquitto/config/acl$": f"acl_file {BROKER_DIR / 'acl'}",
        r"^persistence_location /mosquitto/data/$": f"persistence_location {folder}/",
        r"^log_dest stdout$": f"log_dest file {folder / 'mosquitto.log'}",
    }
    for pattern, value in replacements.items():
        text, count = re.subn(pattern, value, text, flags=re.MULTILINE)
        assert count == 1, f"broker/mosquitto.conf: expected one line matching {pattern}"
    user = pwd.getpwuid(os.getuid()).pw_name
    return f"user {user}\n{text}"


def build_password_file(
    path: Path, passwords: dict[str, str], users_dir: Path | None = None
) -> None:
    """Run broker/build-passwd.sh as the broker container does."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **{f"MQTT_{user.upper()}_PASSWORD": secret for user, secret in passwords.items()},
    }
    if users_dir is not None:
        env["MQTT_USERS_DIR"] = str(users_dir)
    subprocess.run(
        ["sh", str(BROKER_DIR / "build-passwd.sh"), str(path)],
        env=env,
        check=True,
        capture_output=True,
    )


def start_mosquitto(config: Path, *ports: int, host: str = "127.0.0.1") -> subprocess.Popen[bytes]:
    """Start Mosquitto on ``config``; fail the test with its complaint if it does not listen."""
    binary = find_mosquitto()
    if binary is None:
        pytest.fail("mosquitto is not installed: `apt-get install mosquitto` (.ci/run does)")
    stderr = config.with_suffix(".stderr")
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [binary, "-c", str(config)], stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    if not all(wait_for_port(host, port, 10) for port in ports):
        process.kill()
        process.wait()
        pytest.fail(f"Mosquitto did not start on {config}: {stderr.read_text(errors='replace')}")
    return process

"""Mosquitto as ``fleet serve``'s managed child: the broker the fleet relies on is a real one
wherever it is installed (the setup command installs it), with a config generated from the same
files ``fleet provision`` writes: passwd (less the devices the manager barred for flooding),
ACL, client id bound to the user name, persistence of retained desired states, queue and packet
limits, and two listeners: plain MQTT on loopback for the manager, MQTT over TLS for devices,
with a CA and a server certificate made here (the CA's certificate goes into every provisioned
agent.toml; its key never leaves the broker folder). The pure-Python broker (edgekit.broker)
stays as the loopback-only fallback where Mosquitto is not installed."""

from __future__ import annotations

import ipaddress
import shutil
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edgekit.errors import FleetError
from edgekit.fleet.access import active_passwd
from edgekit.keys import write_private

CA_FILE, CA_KEY_FILE, CERT_FILE, CERT_KEY_FILE = "ca.pem", "ca.key", "server.pem", "server.key"
CERT_DAYS = 825  # what browsers accept for a server certificate; the CA lives ten years
TLS_PORT = 8883
SERVE_PASSWD = "serve-passwd"  # what Mosquitto reads: provision's passwd less the barred devices


def binary() -> str | None:
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return found if Path(found).exists() else None


def _names(extra: list[str]) -> list[str]:
    names = ["localhost", "127.0.0.1", socket.gethostname(), socket.getfqdn(), *extra]
    return list(dict.fromkeys(n for n in names if n))


def ensure_tls(folder: str | Path, names: list[str]) -> Path:
    """The broker's CA and server certificate in ``folder`` (made once; the server certificate is
    made again when it lacks one of ``names`` or nears its end). Returns the CA certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = Path(folder)
    now = datetime.now(timezone.utc)
    pem = serialization.Encoding.PEM

    def private_pem(key) -> str:
        return key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()

    if not (folder / CA_FILE).exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgekit fleet broker CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        write_private(folder / CA_KEY_FILE, private_pem(ca_key))
        (folder / CA_FILE).write_bytes(ca.public_bytes(pem))
    ca = x509.load_pem_x509_certificate((folder / CA_FILE).read_bytes())
    if _server_cert_covers(folder / CERT_FILE, names, now):
        return folder / CA_FILE
    ca_key = serialization.load_pem_private_key((folder / CA_KEY_FILE).read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    alt = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    write_private(folder / CERT_KEY_FILE, private_pem(key))
    (folder / CERT_FILE).write_bytes(cert.public_bytes(pem))
    return folder / CA_FILE


def _server_cert_covers(path: Path, names: list[str], now: datetime) -> bool:
    from cryptography import x509

    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.not_valid_after_utc - now < timedelta(days=30):
        return False
    return set(names) <= certificate_names(cert)


def certificate_names(cert) -> set[str]:
    from cryptography import x509

    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in alt.get_values_for_type(x509.IPAddress)} | set(alt.get_values_for_type(x509.DNSName))


def names_in(folder: str | Path) -> set[str]:
    """The host names and addresses the broker's certificate in ``folder`` is valid for."""
    from cryptography import x509

    return certificate_names(x509.load_pem_x509_certificate((Path(folder) / CERT_FILE).read_bytes()))


def config(folder: str | Path, port: int, tls_port: int | None) -> str:
    folder = Path(folder).resolve()
    text = (
        "# written by edgekit fleet serve at every start; edit mosquitto.conf's include instead\n"
        f"per_listener_settings false\nallow_anonymous false\npassword_file {folder}/{SERVE_PASSWD}\n"
        f"acl_file {folder}/acl\n"
        "max_inflight_messages 1000\nmax_queued_messages 1000000\n"
        f"max_packet_size 1048576\nmax_keepalive 120\npersistence true\npersistence_location {folder}/\n"
        # saved every 5 s, not on every 5 changes: a queued QoS 1 message is a change, so under load
        # Mosquitto rewrote its whole database every few messages and acknowledged 300 a second
        "autosave_interval 5\n"
        "user root\n"  # as root Mosquitto would drop to its own user, which cannot read these 0600 files
        # a listener option (it does nothing before the listener lines): a client's id is its user name,
        # so no device's credentials take over another's session, the manager's included
        f"listener {port} 127.0.0.1\nuse_username_as_clientid true\n"
    )
    if tls_port is not None:
        text += (
            f"listener {tls_port}\nuse_username_as_clientid true\n"
            f"cafile {folder}/{CA_FILE}\ncertfile {folder}/{CERT_FILE}\n"
            f"keyfile {folder}/{CERT_KEY_FILE}\ntls_version tlsv1.2\n"
        )
    return text


def _dies_with_its_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when serve dies, however it dies (kill -9
    included), so no broker is left holding the fleet's ports and files."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not Linux: serve's own shutdown stops it
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ManagedMosquitto:
    """``mosquitto -c folder/serve-mosquitto.conf`` as a child process, stopped with serve."""

    def __init__(self, folder: str | Path, port: int, tls_port: int | None, names: list[str] | None = None) -> None:
        self.folder, self.port, self.tls_port = Path(folder), port, tls_port
        self.binary = binary()
        if self.binary is None:
            raise FleetError(
                "mosquitto is not installed (apt-get install mosquitto); or run serve with --broker embedded"
            )
        if tls_port is not None:
            ensure_tls(self.folder, _names(names or []))
        self.conf = self.folder / "serve-mosquitto.conf"
        self.conf.write_text(config(self.folder, port, tls_port))
        self.log = self.folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> ManagedMosquitto:
        self._write_passwd()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=log, stderr=log, preexec_fn=_dies_with_its_parent
            )
        threading.Thread(target=self._reload_on_change, name="edgekit-mosquitto-reload", daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                last = (self.log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
                raise FleetError(f"mosquitto stopped at start ({last}); see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise FleetError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s:.0f} s; see {self.log}")

    def _write_passwd(self) -> bool:
        """Mosquitto's password file: provision's ``passwd`` less the devices the manager barred.
        Returns whether it changed."""
        text = active_passwd(self.folder)
        path = self.folder / SERVE_PASSWD
        if path.exists() and path.read_text() == text:
            return False
        write_private(path, text)
        return True

    def apply_bars(self) -> None:
        """Put out at once the devices the manager just barred (the poll below would within 0.5 s:
        a flooding device sends thousands of messages in that time)."""
        if self._write_passwd() and self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def _reload_on_change(self, every_s: float = 0.5) -> None:
        """Mosquitto reads its password file and acl at start and on SIGHUP, and then disconnects
        whoever is no longer in it: a device provisioned while serve runs is let in, and one the
        manager barred is put out, within a second (as by the embedded broker)."""

        def stamp() -> int:
            return (self.folder / "acl").stat().st_mtime_ns if (self.folder / "acl").exists() else 0

        seen = stamp()
        while self.proc is not None and self.proc.poll() is None:
            time.sleep(every_s)
            now = stamp()
            if (self._write_passwd() or now != seen) and self.proc is not None:
                seen = now
                self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

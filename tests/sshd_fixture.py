"""A real OpenSSH server on 127.0.0.1 for the DVC SSH-remote tests (fixture `sshd`).

It runs Debian's `/usr/sbin/sshd` (package openssh-server, installed by `.ci/run`) in the
foreground with a throw-away configuration in a temporary folder: its own host key, key-only
login for the current user with a freshly generated client key, a free port. Import the fixture
from a conftest or a test module: `from sshd_fixture import sshd  # noqa: F401`.

Where sshd is absent the tests that use it are skipped on a developer machine, but they fail on
CI (`CI` set): the SSH remote must be exercised there. A server that does not come up fails the
test with its log, never skips it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd; needed when it starts as root


@dataclass(frozen=True)
class SSHServer:
    host: str
    port: int
    user: str
    keyfile: Path  # the client's private key
    known_hosts: Path  # a known_hosts line for this server (for OpenSSH clients)
    log: Path

    def url(self, path: str | os.PathLike) -> str:
        """An `ssh://` url of an absolute path on this server (DVC remote syntax)."""
        return f"ssh://{self.user}@{self.host}:{self.port}{Path(path).resolve()}"

    def accepted_logins(self) -> int:
        """How many logins the server accepted so far (read from its log)."""
        return self.log.read_text(errors="replace").count("Accepted publickey")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "quantlake-test", "-f", str(path)], check=True, capture_output=True)


def _require_sshd() -> None:
    missing = [str(p) for p in (SSHD,) if not p.exists()] + [t for t in ("ssh-keygen",) if shutil.which(t) is None]
    if missing:
        reason = f"OpenSSH server not installed ({', '.join(missing)} missing): apt-get install openssh-server"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; on CI the SSH remote test must run (.ci/run installs it)")
        pytest.skip(reason)


def _wait_for_port(host: str, port: int, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited with status {proc.returncode}:\n{log.read_text(errors='replace')}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"sshd did not listen on {host}:{port} within {timeout:.0f}s:\n{log.read_text(errors='replace')}")


def start_sshd(folder: Path) -> tuple[SSHServer, subprocess.Popen]:
    """Generate keys and a configuration in `folder`, start sshd, wait until it listens."""
    _require_sshd()
    folder.mkdir(parents=True, exist_ok=True)
    host_key, user_key = folder / "host_ed25519", folder / "client_ed25519"
    _keygen(host_key)
    _keygen(user_key)
    authorized = folder / "authorized_keys"
    authorized.write_text((folder / "client_ed25519.pub").read_text())
    authorized.chmod(0o600)
    host, port, user = "127.0.0.1", _free_port(), getpass.getuser()
    known = folder / "known_hosts"
    known.write_text(f"[{host}]:{port} {' '.join((folder / 'host_ed25519.pub').read_text().split()[:2])}\n")
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {host}",
                f"Port {port}",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {folder / 'sshd.pid'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}",
                "StrictModes no",  # the temporary folder's permissions are the test runner's
                "UsePAM no",
                "Subsystem sftp internal-sftp",  # DVC's ssh remote speaks SFTP
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)  # what the Debian service creates at boot
    log = folder / "sshd.log"
    check = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.fail(f"sshd rejected its test configuration:\n{check.stderr}")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(host, port, proc, log)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return SSHServer(host, port, user, user_key, known, log), proc


def stop_sshd(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A running sshd on 127.0.0.1 (key login for the current user), stopped after the session."""
    server, proc = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        stop_sshd(proc)

"""Fixtures for the interop tests: a real warden process per test.

Each test gets its own `warden serve` (path from WARDEN_BIN, default
<repo>/target/debug/warden) in a fresh temporary directory with its own
SQLite file, on a free loopback port, with cheap argon2 settings. The
server's output goes to a file; when a test fails, it is attached to the
report as a "warden output" section.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
PASSWORD = "correct horse battery"

_server_key = pytest.StashKey()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Warden:
    """A running `warden serve` and what a test needs to talk to it."""

    def __init__(self, binary, workdir, algorithm):
        self.binary = binary
        self.workdir = workdir
        self.algorithm = algorithm
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "warden.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        env.update(
            WARDEN_BIND=f"127.0.0.1:{self.port}",
            WARDEN_DATABASE_URL=f"sqlite://{workdir}/warden.db",
            WARDEN_ARGON2_MEMORY_KIB="256",
            WARDEN_ARGON2_ITERATIONS="1",
            WARDEN_JWT_ALGORITHM=algorithm,
        )
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "serve"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self):
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"warden exited with {self.proc.returncode} during start-up:\n"
                    + self.output()
                )
            try:
                r = requests.get(f"{self.base}/healthz", timeout=1)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text!r}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        raise RuntimeError(
            f"warden not healthy after {STARTUP_TIMEOUT}s (last: {last}):\n" + self.output()
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def register(self, username="alice", email="alice@example.com", password=PASSWORD):
        r = requests.post(
            f"{self.base}/users",
            json={"username": username, "email": email, "password": password},
            timeout=10,
        )
        assert r.status_code == 201, (r.status_code, r.text)
        return r.json()


def _binary():
    binary = Path(os.environ.get("WARDEN_BIN", REPO / "target" / "debug" / "warden"))
    if not binary.is_file():
        pytest.fail(f"warden binary not found at {binary} (run `cargo build` or set WARDEN_BIN)")
    return binary


@pytest.fixture
def warden(request, tmp_path):
    """A fresh warden; `@pytest.mark.parametrize("warden", [...], indirect=True)`
    picks the JWT algorithm (default EdDSA)."""
    algorithm = getattr(request, "param", "EdDSA")
    server = Warden(_binary(), tmp_path, algorithm)
    request.node.stash[_server_key] = server
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    server = item.stash.get(_server_key, None)
    if server is not None and report.failed:
        try:
            report.sections.append((f"warden output ({report.when})", server.output()))
        except OSError:
            pass
    return report

#!/usr/bin/env python3
"""User-enumeration timing check: does a login for an unknown user take as
long as a login with a wrong password?

Starts a release warden (default argon2 parameters, the real login cost) on a
loopback port with its own SQLite file, registers one user, then times 50
logins of each kind, interleaved, and prints the medians and their ratio.
A benchmark, not a test: it prints a ratio and exits 0; the target is a
ratio within 10 % of 1.0.

Run with:  cargo build --release && python3 bench/enumeration.py
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

TRIES = int(os.environ.get("TRIES", "50"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("WARDEN_BIN", os.path.join(ROOT, "target", "release", "warden"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def post(url, data, json_body=False):
    if json_body:
        body = json.dumps(data).encode()
        headers = {"content-type": "application/json"}
    else:
        body = urllib.parse.urlencode(data).encode()
        headers = {"content-type": "application/x-www-form-urlencoded"}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def main():
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "WARDEN_BIND": f"127.0.0.1:{port}",
            "WARDEN_DATABASE_URL": f"sqlite://{tmp}/warden.db",
            "WARDEN_LOG": "warn",
            # Timing, not throttling, is under test.
            "WARDEN_THROTTLE_PER_PAIR": "1000000",
            "WARDEN_THROTTLE_PER_ADDRESS": "1000000",
            "WARDEN_THROTTLE_PER_ACCOUNT": "1000000",
        }
        server = subprocess.Popen([BIN, "serve"], env=env, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{base}/healthz")
                    break
                except OSError:
                    time.sleep(0.05)
            status = post(f"{base}/users", {"username": "alice", "email": "alice@example.com",
                                            "password": "correct horse battery"}, json_body=True)
            assert status == 201, status
            # Warm up both paths.
            for user in ("alice", "nobody"):
                post(f"{base}/token", {"username": user, "password": "wrong password"})
            unknown, wrong = [], []
            for _ in range(TRIES):
                for user, times in (("nobody", unknown), ("alice", wrong)):
                    start = time.perf_counter()
                    status = post(f"{base}/token", {"username": user, "password": "wrong password"})
                    times.append(time.perf_counter() - start)
                    assert status == 400, status
        finally:
            server.terminate()
            server.wait()
    mu, mw = statistics.median(unknown), statistics.median(wrong)
    ratio = mu / mw
    print(f"logins per kind:          {TRIES}")
    print(f"median unknown user:      {mu * 1000:.2f} ms")
    print(f"median wrong password:    {mw * 1000:.2f} ms")
    print(f"ratio unknown / wrong:    {ratio:.3f}  ({'within' if abs(ratio - 1) <= 0.10 else 'OUTSIDE'} 10 %)")


if __name__ == "__main__":
    sys.exit(main())

"""The authorization servers the OAuth interop tests run against.

Each provider starts itself on a free loopback port, has the user `alice`,
creates clients on demand, and knows what its login form calls the
username field. The tests talk to it only through its RFC 8414 metadata
and its hosted pages.

- `Warden`: the real binary (WARDEN_BIN, default target/debug/warden):
  `warden migrate`, `warden users create`, `warden serve` with a fresh
  SQLite file and cheap argon2; clients with `warden clients create`.
- `ReferenceOP`: panva's oidc-provider (interop/node/reference-op.mjs, needs
  `npm ci` in interop/node); clients through dynamic registration (RFC 7591).
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

import login_driver

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "interop" / "node"
METADATA_PATH = "/.well-known/oauth-authorization-server"
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"
USERNAME = "alice"
FULL_NAME = "Alice Liddell"
EMAIL = f"{USERNAME}@example.com"
# What the OpenID relying-party tests ask for.
OIDC_SCOPE = "openid profile email offline_access"
PASSWORD = "correct horse battery"
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
TIMEOUT = 10


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def callback_uri():
    """A loopback redirect URI (RFC 8252 §7.3) on which nothing listens."""
    return f"http://127.0.0.1:{free_port()}/callback"


@dataclass
class Client:
    client_id: str
    client_secret: str | None
    redirect_uri: str | None
    auth_method: str  # client_secret_basic, client_secret_post or none
    scope: str
    post_logout_redirect_uri: str | None = None


class Provider:
    name = "?"
    username_field = "username"
    username = USERNAME
    password = PASSWORD

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.metadata_url = self.base + METADATA_PATH
        self.log_path = self.workdir / f"{self.name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = None
        self.metadata = None

    # -- process ---------------------------------------------------------------

    def _spawn(self, argv, env, cwd):
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
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
        """Until the metadata answers 200; keeps it in `self.metadata`."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} during start-up:\n"
                    + self.output()
                )
            try:
                r = requests.get(self.metadata_url, timeout=1)
                if r.status_code == 200:
                    self.metadata = r.json()
                    return
                last = f"HTTP {r.status_code}: {r.text!r}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.name} not ready after {STARTUP_TIMEOUT}s (last: {last}):\n" + self.output()
        )

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    # -- what the tests ask for --------------------------------------------------

    @property
    def issuer(self):
        return self.metadata["issuer"]

    def sign_in(self, authorization_url, redirect_uri, **kwargs):
        """`login_driver.sign_in` as alice, with this provider's field name."""
        kwargs.setdefault("username", self.username)
        kwargs.setdefault("password", self.password)
        return login_driver.sign_in(
            authorization_url, redirect_uri, username_field=self.username_field, **kwargs
        )

    def openid_configuration(self):
        """The OpenID Connect Discovery 1.0 document, or None when it is absent (404)."""
        r = requests.get(self.base + OPENID_CONFIGURATION_PATH, timeout=TIMEOUT)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def create_client(self, auth_method="client_secret_basic", scope="me"):
        """A client for the code flow (+ refresh) with one loopback redirect URI."""
        raise NotImplementedError

    def create_oidc_client(self, auth_method="client_secret_basic"):
        """A relying party: the OpenID scopes, id tokens signed RS256, and one
        post-logout redirect URI (a loopback URI on which nothing listens)."""
        raise NotImplementedError

    def create_service_client(self, scope="tokens:introspect"):
        """A confidential client allowed only client_credentials."""
        raise NotImplementedError


class Warden(Provider):
    name = "warden"
    username_field = "username"

    def __init__(self, workdir, binary):
        super().__init__(workdir)
        self.binary = Path(binary)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        env.update(
            WARDEN_BIND=f"127.0.0.1:{self.port}",
            WARDEN_DATABASE_URL=f"sqlite://{self.workdir}/warden.db",
            WARDEN_ARGON2_MEMORY_KIB="256",
            WARDEN_ARGON2_ITERATIONS="1",
        )
        self.env = env

    def cli(self, *args, stdin=None):
        r = subprocess.run(
            [str(self.binary), *args],
            cwd=self.workdir,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode != 0:
            raise RuntimeError(
                f"warden {' '.join(args)} exited with {r.returncode}:\n{r.stdout}{r.stderr}"
            )
        return r.stdout

    def start(self):
        self.cli("migrate")
        self.cli(
            "users",
            "create",
            "--username",
            USERNAME,
            "--email",
            EMAIL,
            "--full-name",
            FULL_NAME,
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        self._spawn([str(self.binary), "serve"], self.env, self.workdir)
        self.wait_ready()

    def has_code_flow(self):
        return bool(self.metadata.get("authorization_endpoint"))

    @staticmethod
    def _client_json(stdout):
        # The contract: the client as JSON (one object) on standard output;
        # tolerate a line of text before or after it.
        obj, _ = json.JSONDecoder().raw_decode(stdout[stdout.index("{") :])
        return obj

    def create_client(self, auth_method="client_secret_basic", scope="me", logout=False):
        redirect_uri = callback_uri()
        args = ["clients", "create", "--name", f"interop {auth_method}"]
        args += ["--redirect-uri", redirect_uri]
        for s in scope.split():
            args += ["--scope", s]
        args += ["--grant", "authorization_code", "--grant", "refresh_token"]
        post_logout = None
        if logout:
            post_logout = callback_uri().replace("/callback", "/signed-out")
            args += ["--post-logout-redirect-uri", post_logout]
        if auth_method == "none":
            args.append("--public")
        c = self._client_json(self.cli(*args))
        secret = c.get("client_secret")
        assert (secret is None) == (auth_method == "none"), c
        return Client(c["client_id"], secret, redirect_uri, auth_method, scope, post_logout)

    def create_oidc_client(self, auth_method="client_secret_basic"):
        # RS256 is warden's default id-token algorithm (WARDEN_ID_TOKEN_ALGORITHM).
        return self.create_client(auth_method, OIDC_SCOPE, logout=True)

    def create_service_client(self, scope="tokens:introspect"):
        # The contract's CLI wants at least one --redirect-uri for every
        # client; a service client never uses it.
        args = ["clients", "create", "--name", "interop service"]
        args += ["--redirect-uri", callback_uri()]
        args += ["--scope", scope, "--grant", "client_credentials"]
        c = self._client_json(self.cli(*args))
        return Client(c["client_id"], c["client_secret"], None, "client_secret_basic", scope)


class ReferenceOP(Provider):
    name = "oidc-provider"
    # devInteractions' login form names the username field `login`.
    username_field = "login"

    def __init__(self, workdir):
        super().__init__(workdir)
        self.registration_token = secrets.token_urlsafe(24)

    def start(self):
        script = NODE_DIR / "reference-op.mjs"
        if not (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(f"oidc-provider is not installed: run `npm ci` in {NODE_DIR}")
        config = {
            "port": self.port,
            "accounts": {USERNAME: PASSWORD},
            "names": {USERNAME: FULL_NAME},
            "registration_token": self.registration_token,
        }
        self._spawn(["node", str(script), json.dumps(config)], dict(os.environ), NODE_DIR)
        self.wait_ready()

    def _register(self, metadata):
        r = requests.post(
            self.metadata["registration_endpoint"],
            json=metadata,
            headers={"Authorization": f"Bearer {self.registration_token}"},
            timeout=TIMEOUT,
        )
        assert r.status_code == 201, (r.status_code, r.text)
        return r.json()

    def create_client(self, auth_method="client_secret_basic", scope="me"):
        redirect_uri = callback_uri()
        c = self._register(
            {
                "client_name": f"interop {auth_method}",
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": auth_method,
                "scope": scope,
            }
        )
        return Client(c["client_id"], c.get("client_secret"), redirect_uri, auth_method, scope)

    def create_oidc_client(self, auth_method="client_secret_basic"):
        redirect_uri = callback_uri()
        post_logout = callback_uri().replace("/callback", "/signed-out")
        c = self._register(
            {
                "client_name": f"interop rp {auth_method}",
                "redirect_uris": [redirect_uri],
                "post_logout_redirect_uris": [post_logout],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": auth_method,
                "id_token_signed_response_alg": "RS256",
                "scope": OIDC_SCOPE,
            }
        )
        return Client(
            c["client_id"], c.get("client_secret"), redirect_uri, auth_method, OIDC_SCOPE, post_logout
        )

    def create_service_client(self, scope="tokens:introspect"):
        c = self._register(
            {
                "client_name": "interop service",
                "redirect_uris": [],
                "grant_types": ["client_credentials"],
                "response_types": [],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": scope,
            }
        )
        return Client(c["client_id"], c["client_secret"], None, "client_secret_basic", scope)

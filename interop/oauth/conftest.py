"""The `provider` fixture of the OAuth interop tests: one authorization
server per test module and provider, parametrized over

- `oidc-provider`: panva's certified reference server (always runs), and
- `warden`: the real binary. Until warden has the authorization code flow
  (its metadata has no `authorization_endpoint`), its tests are SKIPPED with
  the reason printed by `pytest -rs`; with WARDEN_TEST_REQUIRE_OAUTH=1 that
  is a FAILURE instead, so a CI that expects the flow never passes silently.

When a test fails, the server's output is attached to the report.
"""

import os
from pathlib import Path

import pytest

from providers import REPO, ReferenceOP, Warden

_provider_key = pytest.StashKey()


def _warden_binary():
    binary = Path(os.environ.get("WARDEN_BIN", REPO / "target" / "debug" / "warden"))
    if not binary.is_file():
        pytest.fail(f"warden binary not found at {binary} (run `cargo build` or set WARDEN_BIN)")
    return binary


@pytest.fixture(scope="module", params=["oidc-provider", "warden"])
def provider(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(request.param)
    if request.param == "warden":
        server = Warden(workdir, _warden_binary())
    else:
        server = ReferenceOP(workdir)
    try:
        server.start()
        if request.param == "warden" and not server.has_code_flow():
            reason = (
                "warden's metadata has no authorization_endpoint: the code flow "
                "is not implemented in this binary yet"
            )
            if os.environ.get("WARDEN_TEST_REQUIRE_OAUTH") == "1":
                pytest.fail(reason + " (WARDEN_TEST_REQUIRE_OAUTH=1)", pytrace=False)
            pytest.skip(reason)
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _remember_provider(request):
    if "provider" in request.fixturenames:
        request.node.stash[_provider_key] = request.getfixturevalue("provider")
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    server = item.stash.get(_provider_key, None)
    if server is not None and report.failed:
        try:
            report.sections.append((f"{server.name} output ({report.when})", server.output()))
        except OSError:
            pass
    return report

"""authlib as an OpenID Connect relying party: the framework-free core of
its Flask/Django/Starlette integrations (`OAuth2Mixin` + `OpenIDMixin` on
its requests `OAuth2Session`), configured from nothing but the issuer's
OpenID Connect Discovery document.

- discovery from /.well-known/openid-configuration;
- the code flow with PKCE S256 and a `nonce` (authlib makes both);
- the id token validated by authlib's `parse_id_token`: signature with a
  key from the discovered JWKS (only the advertised algorithms), `iss`,
  `aud`, `exp`, `iat`, `nonce`, and `at_hash` against the access token
  when present (OIDC Core §3.1.3.6 makes it optional in the code flow;
  warden's contract always sends it);
- userinfo with the access token, its `sub` equal to the id token's;
- a nonce other than the one sent, and an id token whose signature was
  altered, are refused by authlib;
- RP-initiated logout with authlib's `create_logout_url` (`id_token_hint`,
  `post_logout_redirect_uri`, `state`): the redirect back carries the
  state and the browser session is over. Where warden has no answering
  `end_session_endpoint` that test is skipped with the reason, and with
  WARDEN_TEST_REQUIRE_OAUTH=1 it fails instead.

Run against warden and against oidc-provider (see conftest.py).
"""

import os
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.base_client.sync_app import BaseApp, OAuth2Mixin
from authlib.integrations.base_client.sync_openid import OpenIDMixin
from authlib.integrations.requests_client import OAuth2Session
from joserfc.errors import BadSignatureError, InvalidClaimError

from login_driver import sign_out
from providers import EMAIL, FULL_NAME, OPENID_CONFIGURATION_PATH, TIMEOUT, USERNAME


class RelyingParty(OAuth2Mixin, OpenIDMixin, BaseApp):
    """What authlib's framework clients are made of, without a framework
    (no web session: the test keeps state, nonce and verifier itself)."""

    client_cls = OAuth2Session

    def __init__(self, provider, client):
        super().__init__(
            framework=None,
            name="interop",
            client_id=client.client_id,
            client_secret=client.client_secret,
            server_metadata_url=provider.base + OPENID_CONFIGURATION_PATH,
            client_kwargs={
                "scope": client.scope,
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": client.auth_method,
            },
        )


def sign_in(provider, client, browser=None):
    """Discovery, the code flow through the hosted pages; returns (rp, token, nonce)."""
    rp = RelyingParty(provider, client)
    metadata = rp.load_server_metadata()
    # OpenID Connect Discovery §4.3: the issuer is exactly the URL asked.
    assert metadata["issuer"] == provider.base, metadata
    request = rp.create_authorization_url(redirect_uri=client.redirect_uri)
    query = parse_qs(urlsplit(request["url"]).query)
    assert query["nonce"] == [request["nonce"]]
    assert query["code_challenge_method"] == ["S256"]
    assert set(query["scope"][0].split()) >= {"openid", "profile", "email"}
    callback, steps = provider.sign_in(request["url"], client.redirect_uri, session=browser)
    assert steps == ["login", "consent"], steps
    token = rp.fetch_access_token(
        redirect_uri=client.redirect_uri,
        authorization_response=callback,
        state=request["state"],  # authlib refuses another one
        code_verifier=request["code_verifier"],
    )
    assert token["token_type"].lower() == "bearer"
    assert token.get("id_token"), token
    return rp, token, request["nonce"]


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "none"])
def test_code_flow_with_nonce_and_a_validated_id_token(provider, auth_method):
    client = provider.create_oidc_client(auth_method)
    rp, token, nonce = sign_in(provider, client)
    claims = rp.parse_id_token(token, nonce=nonce)
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == client.client_id or claims["aud"] == [client.client_id], claims
    assert claims["nonce"] == nonce
    assert claims["sub"]
    if provider.name == "warden":
        # validated by authlib above (CodeIDToken.validate_at_hash)
        assert claims.get("at_hash"), claims
    assert claims.get("preferred_username") == USERNAME, claims
    assert claims.get("name") == FULL_NAME, claims
    assert claims.get("email") == EMAIL, claims

    info = rp.userinfo(token=token)
    assert info["sub"] == claims["sub"], (info, claims)
    assert info.get("preferred_username") == USERNAME, info
    assert info.get("name") == FULL_NAME, info
    assert info.get("email") == EMAIL, info
    assert info.get("email_verified") in (True, False), info


def test_a_forged_nonce_is_refused(provider):
    client = provider.create_oidc_client()
    rp, token, nonce = sign_in(provider, client)
    with pytest.raises(InvalidClaimError, match="nonce"):
        rp.parse_id_token(token, nonce=nonce + "x")
    # and the real one passes, so the refusal was about the nonce alone
    assert rp.parse_id_token(token, nonce=nonce)["nonce"] == nonce


def test_an_altered_id_token_signature_is_refused(provider):
    client = provider.create_oidc_client()
    rp, token, nonce = sign_in(provider, client)
    header, payload, signature = token["id_token"].split(".")
    # Flip bits in the middle of the signature (the last character may carry
    # padding bits that decode to the same bytes).
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    forged = dict(token, id_token=".".join([header, payload, signature[:middle] + flipped + signature[middle + 1 :]]))
    with pytest.raises(BadSignatureError):
        rp.parse_id_token(forged, nonce=nonce)


def test_discovery_document(provider):
    """The OpenID Connect Discovery fields a relying party reads."""
    meta = provider.openid_configuration()
    assert meta is not None, "no /.well-known/openid-configuration"
    assert meta["issuer"] == provider.base
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert meta[endpoint].startswith(provider.base + "/"), (endpoint, meta.get(endpoint))
    assert meta["response_types_supported"] == ["code"]
    assert "public" in meta["subject_types_supported"]
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    assert {"openid", "profile", "email", "offline_access"} <= set(meta["scopes_supported"])
    assert {"sub", "preferred_username", "name", "email"} <= set(meta["claims_supported"])
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    # RFC 8414 metadata lists the same endpoints.
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert provider.metadata.get(endpoint) == meta[endpoint], endpoint


def no_end_session(provider):
    """Why RP-initiated logout cannot be tested at this provider, or None."""
    endpoint = (provider.openid_configuration() or {}).get("end_session_endpoint")
    if not endpoint:
        return "the discovery document has no end_session_endpoint"
    status = requests.get(endpoint, allow_redirects=False, timeout=TIMEOUT).status_code
    if status in (404, 405):
        return f"its end_session_endpoint {endpoint} answers {status}"
    return None


def test_rp_initiated_logout(provider):
    why = no_end_session(provider)
    if why:
        if provider.name != "warden":
            pytest.fail(f"{provider.name}: {why}")
        reason = f"warden: {why} (RP-initiated logout is not in this binary)"
        if os.environ.get("WARDEN_TEST_REQUIRE_OAUTH") == "1":
            pytest.fail(reason + " (WARDEN_TEST_REQUIRE_OAUTH=1)", pytrace=False)
        pytest.skip(reason)
    client = provider.create_oidc_client()
    browser = requests.Session()
    rp, token, nonce = sign_in(provider, client, browser)
    rp.parse_id_token(token, nonce=nonce)
    logout = rp.create_logout_url(
        post_logout_redirect_uri=client.post_logout_redirect_uri, id_token_hint=token["id_token"]
    )
    callback, steps = sign_out(logout["url"], client.post_logout_redirect_uri, session=browser)
    parts = urlsplit(callback)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == client.post_logout_redirect_uri
    assert parse_qs(parts.query).get("state") == [logout["state"]], callback
    if provider.name == "warden":
        # the contract: a valid id_token_hint of the current browser session shows no page
        assert steps == [], steps
    # The browser session is over: the same browser is asked for its password.
    request = rp.create_authorization_url(redirect_uri=client.redirect_uri)
    _, steps = provider.sign_in(request["url"], client.redirect_uri, session=browser)
    assert steps[0] == "login", steps

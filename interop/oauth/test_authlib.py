"""authlib's OAuth2Session (authlib.integrations.requests_client) as an
OAuth 2.1 client: the authorization code flow with PKCE S256 and each client
authentication method, client_credentials, and refresh token rotation.

Everything comes from the RFC 8414 metadata; the hosted login and consent
pages are driven by their forms (login_driver). Run against warden and
against oidc-provider (see conftest.py).
"""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from login_driver import SignInError

TIMEOUT = 10


def session_for(client, **kwargs):
    return OAuth2Session(
        client_id=client.client_id,
        client_secret=client.client_secret,
        token_endpoint_auth_method=client.auth_method,
        redirect_uri=client.redirect_uri,
        scope=client.scope,
        code_challenge_method="S256",
        **kwargs,
    )


def code_flow(provider, client):
    """authlib's code flow through the hosted pages; returns (session, token, callback)."""
    oauth = session_for(client)
    verifier = generate_token(48)
    url, state = oauth.create_authorization_url(
        provider.metadata["authorization_endpoint"], code_verifier=verifier
    )
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"][0] and query["code_challenge"][0] != verifier
    callback, steps = provider.sign_in(url, client.redirect_uri)
    assert steps[0] == "login", steps
    # authlib checks `state` itself (MismatchingStateException) when given it.
    token = oauth.fetch_token(
        provider.metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=verifier,
        state=state,
    )
    return oauth, token, callback


def assert_issuer_in_callback(provider, callback):
    # authlib does not check RFC 9207's `iss`; the metadata promises it.
    assert provider.metadata.get("authorization_response_iss_parameter_supported") is True
    assert parse_qs(urlsplit(callback).query).get("iss") == [provider.issuer], callback


def assert_bearer(token, scope):
    assert token["token_type"].lower() == "bearer"
    assert token["access_token"]
    assert int(token["expires_in"]) > 0
    if "scope" in token:
        assert set(token["scope"].split()) == set(scope.split()), token


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post", "none"])
def test_code_flow_with_pkce(provider, auth_method):
    client = provider.create_client(auth_method)
    _, token, callback = code_flow(provider, client)
    assert_issuer_in_callback(provider, callback)
    assert_bearer(token, client.scope)
    assert token["refresh_token"]


def test_code_flow_sends_the_chosen_client_authentication(provider):
    """A confidential client that sends no secret at all is refused: the
    secret in the tests above is what authenticated them."""
    client = provider.create_client("client_secret_basic")
    oauth = session_for(client)
    verifier = generate_token(48)
    url, state = oauth.create_authorization_url(
        provider.metadata["authorization_endpoint"], code_verifier=verifier
    )
    callback, _ = provider.sign_in(url, client.redirect_uri)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    r = requests.post(
        provider.metadata["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client.redirect_uri,
            "code_verifier": verifier,
            "client_id": client.client_id,
        },
        timeout=TIMEOUT,
    )
    assert r.status_code in (400, 401), (r.status_code, r.text)
    assert r.json()["error"] == "invalid_client", r.text


def test_client_credentials(provider):
    client = provider.create_service_client()
    oauth = OAuth2Session(
        client_id=client.client_id,
        client_secret=client.client_secret,
        token_endpoint_auth_method=client.auth_method,
        scope=client.scope,
    )
    token = oauth.fetch_token(provider.metadata["token_endpoint"], grant_type="client_credentials")
    assert_bearer(token, client.scope)
    assert "refresh_token" not in token, token


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "none"])
def test_refresh_rotates_and_reuse_is_refused(provider, auth_method):
    client = provider.create_client(auth_method)
    oauth, first, _ = code_flow(provider, client)
    token_endpoint = provider.metadata["token_endpoint"]

    second = oauth.refresh_token(token_endpoint, refresh_token=first["refresh_token"])
    assert_bearer(second, client.scope)
    assert second["refresh_token"] and second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]

    # Using the successor ends any grace for the old one (warden answers a
    # retry within WARDEN_REFRESH_REUSE_GRACE with the same successor).
    third = oauth.refresh_token(token_endpoint, refresh_token=second["refresh_token"])
    assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])

    with pytest.raises(OAuthError) as reused:
        oauth.refresh_token(token_endpoint, refresh_token=first["refresh_token"])
    assert reused.value.error == "invalid_grant"

    # RFC 9700 §4.14.2: the reuse ends the whole grant, the latest token too.
    with pytest.raises(OAuthError) as after:
        oauth.refresh_token(token_endpoint, refresh_token=third["refresh_token"])
    assert after.value.error == "invalid_grant"


def test_second_client_signs_in_without_a_password(provider):
    """Single sign-on: the same browser, a second client, no password prompt."""
    browser = requests.Session()
    first, second = provider.create_client(), provider.create_client("client_secret_post")
    for client, expect_login in ((first, None), (second, False)):
        oauth = session_for(client)
        verifier = generate_token(48)
        url, state = oauth.create_authorization_url(
            provider.metadata["authorization_endpoint"], code_verifier=verifier
        )
        callback, steps = provider.sign_in(
            url, client.redirect_uri, session=browser, expect_login=expect_login
        )
        token = oauth.fetch_token(
            provider.metadata["token_endpoint"],
            authorization_response=callback,
            code_verifier=verifier,
            state=state,
        )
        assert_bearer(token, client.scope)
    assert "login" not in steps, steps


def test_a_wrong_password_is_refused_on_the_login_page(provider):
    """The hosted login form checks the password (oidc-provider's
    devInteractions alone would not: see interop/node/reference-op.mjs)."""
    client = provider.create_client()
    oauth = session_for(client)
    url, _ = oauth.create_authorization_url(
        provider.metadata["authorization_endpoint"], code_verifier=generate_token(48)
    )
    with pytest.raises(SignInError) as refused:
        provider.sign_in(url, client.redirect_uri, password=provider.password + "!")
    assert "Incorrect username or password" in str(refused.value)

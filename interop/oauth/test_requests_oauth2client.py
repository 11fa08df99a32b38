"""requests-oauth2client (guillp) as an OAuth 2.1 client: discovery from
the RFC 8414 metadata, the code flow with its AuthorizationRequest (PKCE
S256, `state`, and RFC 9207's `iss` enforced), client_credentials, and
revocation (RFC 7009) of a refresh token.

The library refuses plain-http endpoints unless `testing=True`; that flag
only skips its https checks on URLs (our issuer is http on loopback), not
the state or issuer checks.
"""

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from requests_oauth2client import (
    ClientSecretBasic,
    ClientSecretPost,
    OAuth2Client,
    PublicApp,
)
from requests_oauth2client.exceptions import InvalidGrant, MismatchingIssuer, MissingIssuer

AUTH = {
    "client_secret_basic": lambda c: ClientSecretBasic(c.client_id, c.client_secret),
    "client_secret_post": lambda c: ClientSecretPost(c.client_id, c.client_secret),
    "none": lambda c: PublicApp(c.client_id),
}


def scopes(token):
    """The granted scope of a BearerToken as a set (None when not returned)."""
    if token.scope is None:
        return None
    return set(token.scope.split() if isinstance(token.scope, str) else token.scope)


def oauth_client(provider, client):
    oauth = OAuth2Client.from_discovery_endpoint(
        provider.metadata_url,
        issuer=provider.base,  # the metadata's `issuer` must be this
        auth=AUTH[client.auth_method](client),
        redirect_uri=client.redirect_uri,
        code_challenge_method="S256",
        testing=True,
    )
    assert oauth.authorization_response_iss_parameter_supported is True
    return oauth


def authorize(provider, oauth, client):
    """An AuthorizationRequest through the hosted pages, validated."""
    azr = oauth.authorization_request(
        scope=client.scope,
        # Enforce RFC 9207: a response without `iss` is refused.
        authorization_response_iss_parameter_supported=True,
    )
    assert azr.code_challenge_method == "S256" and azr.code_verifier
    assert azr.issuer == provider.issuer
    callback, _ = provider.sign_in(azr.uri, client.redirect_uri)
    return azr, azr.validate_callback(callback), callback


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "none"])
def test_code_flow_with_pkce_and_issuer_check(provider, auth_method):
    client = provider.create_client(auth_method)
    oauth = oauth_client(provider, client)
    azr, response, _ = authorize(provider, oauth, client)
    token = oauth.authorization_code(response)
    assert token.token_type.lower() == "bearer"
    assert token.access_token and token.refresh_token
    assert not token.is_expired()
    assert scopes(token) in (None, {"me"})


def test_a_callback_from_another_issuer_is_refused(provider):
    """The mix-up defence (RFC 9207) this library applies to the server's
    real response: the same callback with another `iss`, or without one,
    must not validate."""
    client = provider.create_client()
    oauth = oauth_client(provider, client)
    azr, _, callback = authorize(provider, oauth, client)
    parts = urlsplit(callback)
    query = parse_qsl(parts.query)
    assert ("iss", provider.issuer) in query

    def with_query(pairs):
        return urlunsplit(parts._replace(query=urlencode(pairs)))

    forged = with_query([(k, "http://127.0.0.1:1" if k == "iss" else v) for k, v in query])
    with pytest.raises(MismatchingIssuer):
        azr.validate_callback(forged)
    stripped = with_query([(k, v) for k, v in query if k != "iss"])
    with pytest.raises(MissingIssuer):
        azr.validate_callback(stripped)
    # The real one still validates.
    assert azr.validate_callback(callback).code


def test_client_credentials(provider):
    client = provider.create_service_client()
    oauth = OAuth2Client.from_discovery_endpoint(
        provider.metadata_url,
        issuer=provider.base,
        auth=ClientSecretBasic(client.client_id, client.client_secret),
        testing=True,
    )
    token = oauth.client_credentials(scope=client.scope)
    assert token.token_type.lower() == "bearer"
    assert token.access_token
    assert token.refresh_token is None
    assert scopes(token) in (None, set(client.scope.split()))


@pytest.mark.parametrize("auth_method", ["client_secret_post", "none"])
def test_revoked_refresh_token_is_refused(provider, auth_method):
    client = provider.create_client(auth_method)
    oauth = oauth_client(provider, client)
    assert oauth.revocation_endpoint == provider.metadata["revocation_endpoint"]
    _, response, _ = authorize(provider, oauth, client)
    token = oauth.authorization_code(response)
    assert oauth.revoke_refresh_token(token) is True
    with pytest.raises(InvalidGrant):
        oauth.refresh_token(token)

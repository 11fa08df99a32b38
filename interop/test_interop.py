"""Interop: real third-party Python clients against a real warden.

- PyJWT verifies warden's access tokens offline from the JWKS, for every
  asymmetric algorithm warden signs with.
- authlib's OAuth2Session runs the password grant, calls a protected route
  with the bearer token it attaches, and rotates refresh tokens.
- authlib's RFC 8414 model reads warden's authorization server metadata.

Nothing here works around a client: if a client rejects what warden sends,
the test fails and warden is what needs fixing.
"""

import base64
import json

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from conftest import PASSWORD

TIMEOUT = 10
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "sub"]
KEY_TYPES = {"EdDSA": ("OKP", "Ed25519"), "ES256": ("EC", "P-256"), "RS256": ("RSA", None)}


def login(base, username="alice", password=PASSWORD):
    r = requests.post(
        f"{base}/token", data={"username": username, "password": password}, timeout=TIMEOUT
    )
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def b64url_decode(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_client(**kwargs):
    """An authlib client for warden: a public client, no client
    authentication (warden's metadata says token_endpoint_auth_methods_supported
    is ["none"])."""
    return OAuth2Session(
        client_id="warden-interop", token_endpoint_auth_method="none", **kwargs
    )


# --- PyJWT --------------------------------------------------------------------


@pytest.mark.parametrize("warden", ["EdDSA", "ES256", "RS256"], indirect=True)
def test_pyjwt_verifies_access_token_with_jwks(warden):
    alg, base = warden.algorithm, warden.base
    user = warden.register()
    token = login(base)
    assert token["token_type"].lower() == "bearer"
    access = token["access_token"]

    jwks = requests.get(f"{base}/.well-known/jwks.json", timeout=TIMEOUT).json()
    header = jwt.get_unverified_header(access)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == alg
    by_kid = {k["kid"]: k for k in jwks["keys"]}
    assert header["kid"] in by_kid, (header, list(by_kid))
    kty, crv = KEY_TYPES[alg]
    assert by_kid[header["kid"]]["kty"] == kty
    if crv:
        assert by_kid[header["kid"]]["crv"] == crv
    assert not any(k in by_kid[header["kid"]] for k in ("d", "p", "q", "dp", "dq", "qi"))

    jwks_client = jwt.PyJWKClient(f"{base}/.well-known/jwks.json")
    signing_key = jwks_client.get_signing_key_from_jwt(access)
    assert signing_key.key_id == header["kid"]
    claims = jwt.decode(
        access,
        signing_key,
        algorithms=[alg],
        issuer=base,
        options={"require": REQUIRED_CLAIMS},
    )
    assert claims["sub"] == user["id"]
    assert claims["username"] == "alice"
    assert claims["scope"] == "me"
    assert isinstance(claims["sid"], str) and claims["sid"]
    assert claims["roles"] == ["user"]
    assert claims["exp"] - claims["iat"] == token["expires_in"]

    # Tampered: a real escalation attempt (edited claim, original signature)
    # and a single flipped character in the payload.
    head, payload, sig = access.split(".")
    forged = dict(claims, scope="me users:read users:write")
    forged_token = ".".join([head, b64url_encode(json.dumps(forged).encode()), sig])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged_token, signing_key, algorithms=[alg], issuer=base)
    flipped = payload[:5] + ("A" if payload[5] != "A" else "B") + payload[6:]
    with pytest.raises((jwt.InvalidSignatureError, jwt.DecodeError)):
        jwt.decode(".".join([head, flipped, sig]), signing_key, algorithms=[alg], issuer=base)

    # warden agrees about all three.
    def me(tok):
        return requests.get(
            f"{base}/users/me", headers={"Authorization": f"Bearer {tok}"}, timeout=TIMEOUT
        )

    assert me(access).status_code == 200
    for bad in (forged_token, ".".join([head, flipped, sig])):
        r = me(bad)
        assert r.status_code == 401, (r.status_code, r.text)
        assert r.json() == {"detail": "Invalid token"}


# --- authlib: password grant, bearer calls, refresh rotation -------------------


def test_authlib_password_grant_and_refresh_rotation(warden):
    base = warden.base
    user = warden.register()
    client = public_client()

    token = client.fetch_token(f"{base}/token", username="alice", password=PASSWORD)
    assert token["token_type"].lower() == "bearer"
    assert token["scope"] == "me"
    assert token["refresh_token"]
    assert token["expires_at"]  # authlib derived it from expires_in

    r = client.get(f"{base}/users/me", timeout=TIMEOUT)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.json()["id"] == user["id"]

    first_refresh = token["refresh_token"]
    second = client.refresh_token(f"{base}/token", refresh_token=first_refresh)
    assert second["refresh_token"] != first_refresh
    assert second["access_token"] != token["access_token"]
    assert client.token["access_token"] == second["access_token"]
    r = client.get(f"{base}/users/me", timeout=TIMEOUT)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.json()["id"] == user["id"]

    # Use the successor once, so the first refresh token is past its grace
    # period; then presenting the first one again is reuse.
    third = client.refresh_token(f"{base}/token", refresh_token=second["refresh_token"])
    assert third["refresh_token"] not in (first_refresh, second["refresh_token"])

    with pytest.raises(OAuthError) as err:
        client.refresh_token(f"{base}/token", refresh_token=first_refresh)
    assert err.value.error == "invalid_grant"

    r = requests.post(
        f"{base}/token",
        data={"grant_type": "refresh_token", "refresh_token": first_refresh},
        timeout=TIMEOUT,
    )
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["error"] == "invalid_grant"
    assert "no-store" in r.headers.get("Cache-Control", "")

    # Reuse revoked the whole session: its newest refresh token is dead too.
    r = requests.post(
        f"{base}/token",
        data={"grant_type": "refresh_token", "refresh_token": third["refresh_token"]},
        timeout=TIMEOUT,
    )
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["error"] == "invalid_grant"


def test_authlib_wrong_password_is_invalid_grant(warden):
    warden.register()
    client = public_client()
    with pytest.raises(OAuthError) as err:
        client.fetch_token(f"{warden.base}/token", username="alice", password="wrong password!")
    assert err.value.error == "invalid_grant"


# --- authlib: RFC 8414 metadata --------------------------------------------------


def test_authlib_reads_authorization_server_metadata(warden):
    base = warden.base
    warden.register()
    r = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    assert r.status_code == 200, (r.status_code, r.text)
    meta = AuthorizationServerMetadata(r.json())

    assert meta["issuer"] == base
    assert meta["token_endpoint"] == f"{base}/token"
    assert meta["jwks_uri"] == f"{base}/.well-known/jwks.json"
    assert meta["revocation_endpoint"] == f"{base}/token/revoke"
    assert meta["introspection_endpoint"] == f"{base}/token/introspect"
    assert {"password", "refresh_token"} <= set(meta["grant_types_supported"])
    assert "none" in meta["token_endpoint_auth_methods_supported"]
    assert "me" in meta["scopes_supported"]

    # authlib's own checks of the fields a password-grant client uses
    # (http is accepted for loopback addresses, RFC 8252 §7.3).
    meta.validate_issuer()
    meta.validate_authorization_endpoint()
    meta.validate_token_endpoint()
    meta.validate_jwks_uri()
    meta.validate_scopes_supported()
    meta.validate_grant_types_supported()
    meta.validate_token_endpoint_auth_methods_supported()
    meta.validate_token_endpoint_auth_signing_alg_values_supported()
    meta.validate_revocation_endpoint()
    meta.validate_revocation_endpoint_auth_methods_supported()
    meta.validate_introspection_endpoint()
    meta.validate_service_documentation()

    # A client configured only from the metadata: token endpoint, then the
    # revocation endpoint kills the refresh token.
    client = public_client(token_endpoint=meta["token_endpoint"])
    token = client.fetch_token(username="alice", password=PASSWORD)
    assert client.get(f"{base}/users/me", timeout=TIMEOUT).status_code == 200
    r = client.revoke_token(
        meta["revocation_endpoint"], token=token["refresh_token"], token_type_hint="refresh_token"
    )
    assert r.status_code == 200, (r.status_code, r.text)
    with pytest.raises(OAuthError) as err:
        client.refresh_token(refresh_token=token["refresh_token"])
    assert err.value.error == "invalid_grant"


def test_authlib_full_metadata_validation(warden):
    r = requests.get(f"{warden.base}/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    assert r.status_code == 200, (r.status_code, r.text)
    AuthorizationServerMetadata(r.json()).validate()

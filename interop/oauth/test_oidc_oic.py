"""oic (pyoidc, the PyPI package `oic`) as an OpenID Connect relying party,
the way its documentation uses it:

- `Client.provider_config(issuer)`: discovery, which refuses a document
  whose `issuer` is not the one asked for, and loads the JWKS into the
  client's key jar;
- the client registered statically (`store_registration_info`);
- an authorization request with `nonce`, `state` and PKCE S256 (oic's
  `add_code_challenge`); oic remembers the nonce of each state;
- the authorization response parsed by oic (`parse_response`);
- the access token request (`do_access_token_request`): oic verifies the
  id token's signature with the issuer's keys, `iss`, `aud`, `exp`, and
  that its `nonce` is the one sent with that state;
- the userinfo request (`do_user_info_request`).

Run against warden and against oidc-provider (see conftest.py).
"""

from urllib.parse import urlsplit

import pytest
from jwkest import jws
from oic import rndstr
from oic.exception import PyoidcError
from oic.oic import Client
from oic.oic.message import AuthorizationResponse, OpenIDSchema, RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD

from providers import EMAIL, FULL_NAME, USERNAME


def relying_party(provider, client):
    rp = Client(client_authn_method=CLIENT_AUTHN_METHOD)
    info = rp.provider_config(provider.base)
    assert info["issuer"] == provider.base
    assert rp.keyjar.get_issuer_keys(provider.base), "no keys loaded from the JWKS"
    rp.store_registration_info(
        RegistrationResponse(
            client_id=client.client_id,
            client_secret=client.client_secret,
            redirect_uris=[client.redirect_uri],
            token_endpoint_auth_method=client.auth_method,
            id_token_signed_response_alg="RS256",
        )
    )
    return rp


def authorize(provider, client, rp):
    """Returns (state, code verifier, parsed authorization response)."""
    state, nonce = rndstr(32), rndstr(32)
    pkce, verifier = rp.add_code_challenge()
    assert pkce["code_challenge_method"] == "S256"
    url, _, _, request = rp.authorization_request_info(
        request_args={
            "client_id": rp.client_id,
            "response_type": "code",
            "scope": client.scope.split(),
            "redirect_uri": client.redirect_uri,
            "state": state,
            "nonce": nonce,
            **pkce,
        }
    )
    assert request["nonce"] == nonce and rp.state2nonce[state] == nonce
    callback, steps = provider.sign_in(url, client.redirect_uri)
    assert steps == ["login", "consent"], steps
    response = rp.parse_response(
        AuthorizationResponse, info=urlsplit(callback).query, sformat="urlencoded"
    )
    assert isinstance(response, AuthorizationResponse), response
    assert response["state"] == state
    # RFC 9207 (oic does not check it)
    assert response.get("iss") == provider.issuer, response.to_dict()
    return state, verifier, response


def redeem(rp, client, state, verifier, response):
    return rp.do_access_token_request(
        state=state,
        request_args={
            "code": response["code"],
            "redirect_uri": client.redirect_uri,
            "code_verifier": verifier,
        },
        authn_method=client.auth_method,
    )


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_code_flow_id_token_and_userinfo(provider, auth_method):
    client = provider.create_oidc_client(auth_method)
    rp = relying_party(provider, client)
    state, verifier, response = authorize(provider, client, rp)
    tokens = redeem(rp, client, state, verifier, response)
    assert tokens["token_type"].lower() == "bearer"
    id_token = tokens["id_token"]  # the IdToken oic verified
    assert id_token["iss"] == provider.issuer
    assert client.client_id in id_token["aud"]
    assert id_token["nonce"] == rp.state2nonce[state]
    assert id_token.jws_header["alg"] == "RS256"
    if "at_hash" in id_token or provider.name == "warden":
        # OIDC Core §3.1.3.8 with pyjwkest's left_hash (RS256: SHA-256).
        assert id_token["at_hash"] == jws.left_hash(tokens["access_token"], "HS256"), id_token
    assert id_token.get("preferred_username") == USERNAME, id_token.to_dict()

    info = rp.do_user_info_request(state=state)
    assert isinstance(info, OpenIDSchema), info
    assert info["sub"] == id_token["sub"], (info.to_dict(), id_token.to_dict())
    assert info.get("preferred_username") == USERNAME, info.to_dict()
    assert info.get("name") == FULL_NAME, info.to_dict()
    assert info.get("email") == EMAIL, info.to_dict()


def test_an_id_token_with_another_nonce_is_refused(provider):
    """oic compares the id token's nonce with the one it sent for that state."""
    client = provider.create_oidc_client()
    rp = relying_party(provider, client)
    state, verifier, response = authorize(provider, client, rp)
    rp.state2nonce[state] = rndstr(32)  # as if another request had been sent
    with pytest.raises(PyoidcError, match="nonce"):
        redeem(rp, client, state, verifier, response)


def test_discovery_refuses_another_issuer(provider):
    """The check `provider_config` makes (OpenID Connect Discovery §4.3): the
    document fetched through another name of the same host names an issuer
    other than the one asked for, and oic refuses it."""
    rp = Client(client_authn_method=CLIENT_AUTHN_METHOD)
    rp.provider_config(provider.base)
    with pytest.raises(PyoidcError, match="issuer mismatch"):
        Client(client_authn_method=CLIENT_AUTHN_METHOD).provider_config(
            provider.base.replace("127.0.0.1", "localhost")
        )

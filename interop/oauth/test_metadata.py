"""RFC 8414 metadata of a code-flow server, as the clients above read it:
the fields issue 17 promises, and authlib's full validation of the document
(`AuthorizationServerMetadata.validate()`). Same checks on warden and on
oidc-provider."""

from authlib.oauth2.rfc8414 import AuthorizationServerMetadata


def test_metadata_describes_the_code_flow(provider):
    meta = provider.metadata
    assert meta["issuer"] == provider.base
    for endpoint in ("authorization_endpoint", "token_endpoint", "revocation_endpoint"):
        assert meta[endpoint].startswith(provider.base + "/"), (endpoint, meta[endpoint])
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(
        meta["grant_types_supported"]
    )
    assert {"client_secret_basic", "client_secret_post", "none"} <= set(
        meta["token_endpoint_auth_methods_supported"]
    )
    assert {"me", "tokens:introspect"} <= set(meta["scopes_supported"])


def test_authlib_validates_the_whole_document(provider):
    AuthorizationServerMetadata(provider.metadata).validate()

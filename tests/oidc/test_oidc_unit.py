"""Unit tests of the SSO building blocks: ID token validation against a JWKS generated
here, the device-flow poll loop (HTTP injected: each answer is one the RFC 8628 token
endpoint can give), the binding store, and the ``[oidc]`` config section."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import warnings
from pathlib import Path
from typing import Any

import authlib.deprecate  # noqa: F401  # its 'always' filter first; ours wins
import pytest

from gateway.auth.oidc import (
    AccessDenied,
    CodeExpired,
    DeviceGrant,
    IdentityMismatch,
    IdpUnavailable,
    InvalidToken,
    OidcClient,
    identity_for,
)
from gateway.config import OidcSettings, load_config
from gateway.errors import ConfigError
from gateway.ssh.keys import generate_host_key
from state.bindings import BindingStore

with warnings.catch_warnings():  # authlib 1.x marks authlib.jose deprecated (-> joserfc)
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.jose import JsonWebKey, JsonWebToken

ISS = "https://idp.example"
NOW = 1_800_000_000


def _settings(**kw: Any) -> OidcSettings:
    return OidcSettings(issuer=ISS, client_id="bastille", **kw)


@pytest.fixture(scope="module")
def rsa() -> Any:
    return JsonWebKey.generate_key("RSA", 2048, {"kid": "k1", "use": "sig"}, is_private=True)


def _jwks(key: Any) -> dict[str, Any]:
    return {"keys": [key.as_dict(is_private=False)]}


def _claims(**over: Any) -> dict[str, Any]:
    c = {"iss": ISS, "aud": "bastille", "sub": "u-1", "iat": NOW, "exp": NOW + 300,
         "preferred_username": "dave", "groups": ["ops"]}
    c.update(over)
    return c


def _sign(key: Any, claims: dict[str, Any], alg: str = "RS256") -> str:
    return JsonWebToken([alg]).encode({"alg": alg, "kid": "k1"}, claims, key).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _client(**kw: Any) -> OidcClient:
    return OidcClient(_settings(**kw), clock=lambda: float(NOW))


def test_valid_token(rsa: Any) -> None:
    claims = _client().validate_id_token(_sign(rsa, _claims()), _jwks(rsa))
    assert claims["preferred_username"] == "dave"


@pytest.mark.parametrize("over", [
    {"aud": "other-app"},                 # wrong audience
    {"iss": "https://evil.example"},      # wrong issuer
    {"exp": NOW - 3600},                  # expired
])
def test_wrong_claims_rejected(rsa: Any, over: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken, match="token was rejected"):
        _client().validate_id_token(_sign(rsa, _claims(**over)), _jwks(rsa))


def test_forged_signature_rejected(rsa: Any) -> None:
    other = JsonWebKey.generate_key("RSA", 2048, {"kid": "k1"}, is_private=True)
    with pytest.raises(InvalidToken):
        _client().validate_id_token(_sign(other, _claims()), _jwks(rsa))


def test_alg_none_rejected(rsa: Any) -> None:
    token = ".".join([_b64(json.dumps({"alg": "none", "kid": "k1"}).encode()),
                      _b64(json.dumps(_claims()).encode()), ""])
    with pytest.raises(InvalidToken):
        _client().validate_id_token(token, _jwks(rsa))


def test_hs256_with_public_key_as_secret_rejected(rsa: Any) -> None:
    """The classic key-confusion forgery: HMAC keyed with the IdP's public key."""
    public_pem = rsa.as_pem(is_private=False)
    signing_input = ".".join([_b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode()),
                              _b64(json.dumps(_claims()).encode())])
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{_b64(mac)}"
    with pytest.raises(InvalidToken):
        _client().validate_id_token(token, _jwks(rsa))
    # even if an admin listed HS256 against advice, the JWKS holds no HMAC key
    with pytest.raises(InvalidToken):
        _client(allowed_algs=("RS256", "HS256")).validate_id_token(token, _jwks(rsa))


def test_identity_mapping() -> None:
    s = _settings()
    ident = identity_for(_claims(), s, "dave")
    assert (ident.user, ident.idp_groups, ident.subject) == ("dave", ("ops",), "u-1")
    with pytest.raises(IdentityMismatch, match="as 'dave', but asked for SSH user 'bob'"):
        identity_for(_claims(), s, "bob")
    with pytest.raises(IdentityMismatch, match="sent no 'email'"):
        identity_for(_claims(), _settings(username_claim="email"), "dave")
    mapped = _settings(group_map={"ops": ("admins", "ops")})
    assert mapped.map_groups(["ops", "unknown"]) == {"admins", "ops"}
    assert s.map_groups(["x"]) == {"x"}


class FakeIdp:
    """Scripted token endpoint answers (the HTTP itself is covered by the e2e tests)."""

    def __init__(self, answers: list[tuple[int, Any]]) -> None:
        self.answers = answers
        self.calls = 0

    async def __call__(self, url: str, form: dict[str, str] | None,
                       wait_s: float) -> tuple[int, Any]:
        if url.endswith("openid-configuration"):
            return 200, {"issuer": ISS, "device_authorization_endpoint": ISS + "/device/auth",
                         "token_endpoint": ISS + "/token", "jwks_uri": ISS + "/jwks"}
        self.calls += 1
        return self.answers.pop(0)


def _poll(answers: list[tuple[int, Any]], expires: float = NOW + 600,
          slept: list[float] | None = None) -> Any:
    slept = [] if slept is None else slept

    async def sleep(s: float) -> None:
        slept.append(s)

    client = OidcClient(_settings(), clock=lambda: float(NOW), fetch=FakeIdp(answers),
                        sleep=sleep)
    grant = DeviceGrant("dc", "ABCD-EFGH", "u", "u", expires, 5)

    async def run() -> Any:
        return await client.wait(grant)
    return asyncio.run(run())


@pytest.mark.parametrize(("error", "exc", "message"), [
    ("expired_token", CodeExpired, "code expired"),
    ("access_denied", AccessDenied, "denied at the identity provider"),
    ("invalid_client", IdpUnavailable, "refused the login"),
])
def test_poll_errors(error: str, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        _poll([(400, {"error": "authorization_pending"}), (400, {"error": error})])


def test_poll_slow_down_backs_off() -> None:
    slept: list[float] = []
    with pytest.raises(AccessDenied):
        _poll([(400, {"error": "authorization_pending"}), (400, {"error": "slow_down"}),
               (400, {"error": "access_denied"})], slept=slept)
    assert slept == [5, 10]  # RFC 8628 3.5: slow_down adds 5 s to the interval


def test_poll_stops_at_local_expiry() -> None:
    with pytest.raises(CodeExpired):
        _poll([], expires=NOW - 1)


def test_binding_store_expiry_and_revoke(tmp_path: Path) -> None:
    now = [1000.0]
    store = BindingStore(tmp_path / "b.sqlite3", clock=lambda: now[0])
    store.bind(b"key-1", "dave", frozenset({"ops"}), "u-1", ISS, ttl=60)
    store.bind(b"key-2", "dave", frozenset({"ops"}), "u-1", ISS, ttl=60)
    found = store.lookup(b"key-1", "dave")
    assert found is not None and found.groups == {"ops"}
    assert store.lookup(b"key-1", "alice") is None
    assert store.lookup(b"key-3", "dave") is None
    assert (tmp_path / "b.sqlite3").stat().st_mode & 0o777 == 0o600
    now[0] += 61
    assert store.lookup(b"key-1", "dave") is None
    store.bind(b"key-1", "dave", frozenset(), "u-1", ISS, ttl=60)
    assert [b.user for b in store.list()] == ["dave"]
    assert store.revoke("dave") == 1
    assert store.lookup(b"key-1", "dave") is None and store.list() == []


def test_config_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate_host_key(tmp_path / "hk", "test")
    monkeypatch.setenv("OIDC_SECRET_T", "s3cret")
    p = tmp_path / "b.toml"
    p.write_text('[gateway]\nhost_keys = ["hk"]\n\n[oidc]\nissuer = "https://idp.example/"\n'
                 'client_id = "bastille"\nclient_secret_env = "OIDC_SECRET_T"\n'
                 'binding_ttl = "2h"\n[oidc.group_map]\n"idp-ops" = ["ops"]\n')
    c = load_config(p)
    assert c.oidc is not None
    assert c.oidc.issuer == "https://idp.example" and c.oidc.binding_ttl == 7200
    assert c.oidc.client_secret is not None and c.oidc.client_secret.reveal() == "s3cret"
    assert "s3cret" not in repr(c.oidc)
    assert c.oidc.allowed_algs == ("RS256", "ES256")
    assert c.oidc.map_groups(["idp-ops"]) == {"ops"}
    assert c.gateway.login_timeout == 600  # room for the browser; explicit values win
    p.write_text(p.read_text().replace("[gateway]\n", '[gateway]\nlogin_timeout = "90s"\n'))
    assert load_config(p).gateway.login_timeout == 90


def test_config_errors_have_lines(tmp_path: Path) -> None:
    generate_host_key(tmp_path / "hk", "test")
    p = tmp_path / "b.toml"
    p.write_text('[gateway]\nhost_keys = ["hk"]\n\n[oidc]\nissuer = "idp.example"\n'
                 'allowed_algs = ["RS256", "HS256", "none"]\nbinding_tll = "1h"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    problems = [str(x) for x in exc.value.problems]
    assert f"{p}:5: oidc.issuer: expected the IdP's issuer URL (https://...)" in problems
    assert any(x.startswith(f"{p}:6: oidc.allowed_algs: 'HS256' is not allowed")
               for x in problems)
    assert any(x.startswith(f"{p}:6: oidc.allowed_algs: 'none' is not allowed")
               for x in problems)
    assert any(x.startswith(f"{p}:7: oidc.binding_tll: unknown key (did you mean "
                            "'binding_ttl'?)") for x in problems)
    assert any("oidc.client_id: required" in x for x in problems)

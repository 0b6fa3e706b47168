"""kubo's cross-site rules (``pincluster.ipfs.apiguard``) on their own; the daemon-level comparison with a real
kubo is tests/integration/test_ipfs_api_guard.py."""

from __future__ import annotations

import pytest

from pincluster.ipfs.apiguard import CorsPolicy, origins_to_check, referer_origin


def test_default_origins_are_the_apis_own_and_ipfs_companion() -> None:
    p = CorsPolicy.from_http_headers({}, 5001)
    assert p.allows("http://127.0.0.1:5001") and p.allows("https://[::1]:5001") and p.allows("http://localhost:5001")
    assert p.allows("chrome-extension://nibjojkomfdiaoajekhjakgkdhaomnch")
    assert not p.allows("http://127.0.0.1:5002") and not p.allows("http://evil.example")
    assert not p.allows("http://LOCALHOST:5001")  # go-ipfs-cmds compares exactly
    assert p.actual("http://LOCALHOST:5001", "POST") == [  # rs/cors compares in lower case
        ("Vary", "Origin"), ("Access-Control-Allow-Origin", "http://LOCALHOST:5001")]
    assert p.methods == ("POST",) and not p.credentials and p.extra == ()


def test_configured_policy_star_credentials_methods_and_extra_headers() -> None:
    p = CorsPolicy.from_http_headers({"access-control-allow-origin": ["*"], "Access-Control-Allow-Methods": ["PUT"],
                                      "Access-Control-Allow-Credentials": ["TRUE"], "x-frame-options": ["deny"]}, 9)
    assert p.allows("http://anything.example") and p.methods == ("PUT",) and p.credentials
    assert p.extra == (("X-Frame-Options", "deny"),)
    assert p.actual("http://a.example", "PUT") == [("Vary", "Origin"), ("Access-Control-Allow-Origin", "*"),
                                                   ("Access-Control-Allow-Credentials", "true")]
    assert p.actual("http://a.example", "POST") == [("Vary", "Origin")]  # a method the policy does not list
    assert p.actual("", "PUT") == [("Vary", "Origin")]


def test_wildcard_origins_and_preflights() -> None:
    p = CorsPolicy.from_http_headers({"Access-Control-Allow-Origin": ["https://*.example.org"]}, None)
    vary = ("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
    ok = {"Origin": "https://ui.example.org", "Access-Control-Request-Method": "POST"}
    assert p.preflight(ok, []) == [vary, ("Access-Control-Allow-Origin", "https://ui.example.org"),
                                   ("Access-Control-Allow-Methods", "POST")]
    assert p.preflight(ok, ["accept, content-type"])[-1] == ("Access-Control-Allow-Headers", "accept, content-type")
    assert p.preflight(ok, ["content-type, accept"]) == [vary]  # browsers send them sorted
    assert p.preflight(ok, ["content-type,,x-requested-with"])[-1][0] == "Access-Control-Allow-Headers"
    assert p.preflight(ok, ["Content-Type"]) == [vary]  # and in lower case
    assert p.preflight(ok, ["," * 17]) == [vary]  # too many empty elements
    assert p.preflight({**ok, "Origin": "https://example.org"}, []) == [vary]
    assert p.preflight({**ok, "Access-Control-Request-Method": "GET"}, []) == [vary]
    assert p.preflight({"Access-Control-Request-Method": "POST"}, []) == [vary]


@pytest.mark.parametrize(("referer", "origin"), [
    ("http://127.0.0.1:5001/webui/#/files", "http://127.0.0.1:5001"),
    ("https://user:pw@site.example/x", "https://site.example"),
    ("no-scheme", "://"),
    ("::bad", None), ("http://a\x7f/", None), ("http://[::1/", None), ("http://h:port/", None),
    ("http://h%zz/", None), ("http://a b/", None), ("http://h%41/x", None), ("http://h%c3%a9/", "http://h%c3%a9"),
])
def test_referer_origin_as_go_parses_it(referer: str, origin: str | None) -> None:
    assert referer_origin(referer) == origin


def test_which_origins_a_request_must_come_from() -> None:
    assert origins_to_check("POST", {}) == []
    assert origins_to_check("POST", {"User-Agent": "curl/8"}) == []
    assert origins_to_check("POST", {"User-Agent": "Mozilla/5.0"}) is None
    assert origins_to_check("POST", {"User-Agent": "Mozilla/5.0 Electron/30"}) == []
    assert origins_to_check("GET", {"User-Agent": "Mozilla/5.0"}) == []  # the browser rule is for POST
    assert origins_to_check("POST", {"Origin": "http://a", "Referer": "http://b/x"}) == ["http://a", "http://b"]
    assert origins_to_check("POST", {"Referer": "::bad"}) is None


def test_auth_secrets_become_kubos_authorization_headers() -> None:
    """kubo's ``config.ConvertAuthSecret``."""
    from pincluster.ipfs.apiguard import auth_header

    assert auth_header("tok") == "Bearer tok"
    assert auth_header("bearer:tok") == "Bearer tok"
    assert auth_header("basic:u:p") == "Basic dTpw"
    assert auth_header("basic:dTpw") == "Basic dTpw"
    assert auth_header("digest:x") == "" and auth_header("") == ""


def test_rpc_authorizations_let_through_what_kubo_does() -> None:
    from pincluster.ipfs.apiguard import RpcAuthorizations

    open_api = RpcAuthorizations.from_scopes({})
    assert open_api.allows("", "/api/v0/pin/rm") and open_api.header_for("/api/v0/") is None
    auth = RpcAuthorizations.from_scopes({"pins": ("bearer:p", ["/api/v0/pin/ls"]), "root": ("basic:r:pw", ["/api/v0"]),
                                          "none": ("n", [])})
    assert not auth.allows("", "/api/v0/version") and not auth.allows("Bearer x", "/api/v0/version")
    assert auth.allows("Bearer n", "/api/v0/version")  # version: any known secret
    assert not auth.allows("Bearer n", "/api/v0/id")
    assert auth.allows("Bearer p", "/api/v0/pin/ls") and not auth.allows("Bearer p", "/api/v0/pin/rm")
    assert not auth.allows("bearer p", "/api/v0/pin/ls")  # the header is compared exactly
    assert auth.allows("Basic cjpwdw==", "/api/v0/repo/gc")
    assert auth.header_for("/api/v0/") == "Basic cjpwdw=="
    assert RpcAuthorizations.from_scopes({"pins": ("p", ["/api/v0/pin"])}).header_for("/api/v0/") is None


def test_the_api_origin_variable_adds_its_origin_before_the_defaults() -> None:
    p = CorsPolicy.from_http_headers({"Access-Control-Allow-Origin": ["http://a.example"]}, 5001, "http://legacy.example")
    assert p.origins[:3] == ("http://a.example", "http://legacy.example", "http://127.0.0.1:5001")
    assert p.allows("http://legacy.example") and not CorsPolicy.from_http_headers({}, 5001).allows("http://legacy.example")

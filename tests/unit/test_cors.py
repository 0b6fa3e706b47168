"""``pincluster.cors.CorsRules``: rs/cors 1.11's defaults and edge cases (the Go comparisons are
tests/integration/test_go_daemon.py and test_ipfs_api_guard.py)."""

from __future__ import annotations

from pincluster.cors import CorsRules, canonical_header

VARY = ("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")


def test_empty_options_take_rs_cors_defaults() -> None:
    r = CorsRules()
    assert r.origin_allowed("https://anything.example")
    assert [m for m in ("GET", "POST", "HEAD", "PUT", "OPTIONS") if r.method_allowed(m)] == [
        "GET", "POST", "HEAD", "OPTIONS"]
    assert r.headers_accepted(["accept,content-type,x-requested-with"]) and not r.headers_accepted(["origin"])
    assert r.preflight("https://a.example", "GET", None) == [
        VARY, ("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "GET")]
    assert r.actual("https://a.example", "GET") == [("Vary", "Origin"), ("Access-Control-Allow-Origin", "*")]


def test_star_headers_max_age_exposed_and_credentials() -> None:
    r = CorsRules(("https://a.example",), ("GET",), ("*",), ("content-type", "x-stream-output"), True, 600)
    assert r.headers_accepted(["X-Anything, Whatever"])
    assert r.preflight("https://A.example", "GET", ["X-Anything"]) == [
        VARY, ("Access-Control-Allow-Origin", "https://A.example"), ("Access-Control-Allow-Methods", "GET"),
        ("Access-Control-Allow-Headers", "X-Anything"), ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Max-Age", "600")]
    assert r.actual("https://a.example", "GET") == [
        ("Vary", "Origin"), ("Access-Control-Allow-Origin", "https://a.example"),
        ("Access-Control-Expose-Headers", "Content-Type, X-Stream-Output"),
        ("Access-Control-Allow-Credentials", "true")]
    assert r.actual("https://b.example", "GET") == [("Vary", "Origin")]
    assert CorsRules(max_age_seconds=-1).preflight("https://a", "GET", None)[-1] == ("Access-Control-Max-Age", "0")


def test_a_star_among_origins_allows_all_and_a_pattern_needs_its_middle() -> None:
    assert CorsRules(("https://a.example", "*")).actual("https://z", "GET")[1] == ("Access-Control-Allow-Origin", "*")
    r = CorsRules(("https://*.example",))
    assert r.origin_allowed("https://x.example") and r.origin_allowed("https://.example")
    assert not r.origin_allowed("https://example") and not r.origin_allowed("http://x.example")
    assert canonical_header(" x-requested-with ") == "X-Requested-With"

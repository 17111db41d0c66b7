"""The gateway's gate (gateway/guard.py) in-process: Host, Origin, missing and malformed tokens, and the
security headers. Keys and JWTs against real processes are in tests/e2e/test_auth.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from gateway.app import create_app
from gateway.auth import Authenticator, bearer_token, jwt_user_id
from gateway.config import GatewaySettings
from gateway.guard import host_name
from gateway.quotas import Quotas

BASE = "http://127.0.0.1:8080"
WS = "ws://127.0.0.1:8080/v1/voice"


@pytest.fixture()
def client():
    settings = GatewaySettings(allowed_hosts=["echo.example"], allowed_origins=["https://app.example"])
    app = create_app(settings)
    # Outside `with`, TestClient skips the lifespan (gRPC channels, models): the refusals below are
    # decided before any storage call, so no storage is needed.
    app.state.authenticator = Authenticator(settings, storage=None)  # type: ignore[arg-type]
    app.state.quotas = Quotas(settings, storage=None)  # type: ignore[arg-type]
    return TestClient(app, base_url=BASE)


def test_a_foreign_host_is_refused_on_rest_and_websocket(client):
    reply = client.get("/v1/conversations", headers={"host": "attacker.example"})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_host"
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(WS, headers={"host": "attacker.example:8080"}):
            pass
    assert denied.value.status_code == 400
    assert denied.value.json()["error"]["code"] == "invalid_host"


def test_configured_and_loopback_hosts_are_served(client):
    for host in ("127.0.0.1:8080", "localhost", "[::1]:8080", "echo.example", "ECHO.example:443"):
        assert client.get("/v1/protocol.schema.json", headers={"host": host}).status_code == 200, host


def test_health_probes_skip_the_host_check(client):
    # A load balancer names the task by its IP address.
    assert client.get("/healthz", headers={"host": "10.0.3.7:8080"}).status_code == 200


def test_a_cross_origin_websocket_is_refused_before_the_upgrade(client):
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(WS, headers={"origin": "https://evil.example"}):
            pass
    assert denied.value.status_code == 403
    assert denied.value.json()["error"]["code"] == "forbidden_origin"


@pytest.mark.parametrize(
    "headers", [{}, {"authorization": "Bearer not-a-key"}, {"authorization": "Basic eDp5"}]
)
def test_no_or_malformed_token_is_401_on_rest(client, headers):
    reply = client.get("/v1/conversations", headers=headers)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "unauthorized"
    assert reply.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "origin", [None, "http://127.0.0.1:8080", "http://localhost:5173", "https://app.example"]
)
def test_allowed_origins_reach_the_token_check(client, origin):
    # Allowed (or no Origin: not a browser) gets as far as the token: 401, not 403.
    headers = {"origin": origin} if origin else {}
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(WS, headers=headers):
            pass
    assert denied.value.status_code == 401
    assert denied.value.json()["error"]["code"] == "unauthorized"


def test_security_headers(client):
    page = client.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    for reply in (page, client.get("/healthz"), client.get("/v1/conversations")):
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["referrer-policy"] == "no-referrer"


def test_the_web_client_has_no_inline_script():
    # What the CSP forbids must not be what the page needs.
    from gateway.app import HERE

    html = (HERE / "static/index.html").read_text()
    assert "<script>" not in html and "<style>" not in html and 'src="/static/app.js"' in html


def test_bearer_token_sources():
    assert bearer_token({"authorization": "Bearer abc"}, {}) == "abc"
    assert bearer_token({"authorization": "bearer  abc "}, {}) == "abc"
    assert bearer_token({}, {"access_token": "q"}) == "q"
    assert bearer_token({"authorization": "Basic x"}, {}) == ""


def test_host_names():
    assert host_name("[::1]:8080") == "::1"
    assert host_name("Example.COM:443") == "example.com"
    assert host_name("localhost") == "localhost"


def test_jwt_subjects_become_storage_ids():
    assert jwt_user_id("3f1c-uuid") == "3f1c-uuid"
    odd = jwt_user_id("auth0|12345")
    assert odd.startswith("sub-") and odd == jwt_user_id("auth0|12345") and len(odd) == 36


def test_tokens_in_query_strings_are_redacted_from_logs():
    import logging

    from gateway.redact import RedactTokens, redact

    assert redact("/v1/voice?access_token=ek_1_secret") == "/v1/voice?access_token=<redacted>"
    assert redact("/?token=ek_1_s&x=1") == "/?token=<redacted>&x=1"
    assert redact("/v1/voice?mytoken=keep") == "/v1/voice?mytoken=keep"
    record = logging.LogRecord(
        "uvicorn.access", 20, "", 0, '%s - "%s %s"', ("1.2.3.4", "GET", "/?token=ek_9"), None
    )
    RedactTokens().filter(record)
    assert "ek_9" not in record.getMessage()

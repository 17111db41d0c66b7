"""Issue 11 against the real gateway and storage processes: tokens, tenant isolation, Origin and Host,
and per-user limits on an open session."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
import websockets

from echo_voice.client import GatewayRefused, VoiceClient
from gateway.events import InputText, OutputAudio, SessionEnd
from tests.e2e.auth import Issuer, auth_headers, create_key, jwks_server, revoke_key
from tests.e2e.test_voice_turn import wait_for_turns

ISSUER = "https://issuer.echo.test"
AUDIENCE = "echo-web"


async def status_of(base: str, token: str | None, path: str = "/v1/conversations") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=base) as http:
        return await http.get(path, headers=headers)


async def refused_upgrade(url: str, token: str) -> GatewayRefused:
    with pytest.raises(GatewayRefused) as refused:
        async with VoiceClient(url, token=token):
            pass
    return refused.value


async def test_missing_bad_and_revoked_keys_are_refused(stack):
    for token in ("", "ek_000000000000_not-a-real-key", "not-even-a-key"):
        reply = await status_of(stack.base, token)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthorized", token
        assert reply.headers["www-authenticate"].startswith("Bearer")
        refused = await refused_upgrade(stack.ws, token)
        assert refused.status == 401 and refused.code == "unauthorized"
    key, key_id = create_key(stack.addresses["storage"], "carol")
    assert (await status_of(stack.base, key)).status_code == 200
    async with VoiceClient(stack.ws, token=key) as client:
        assert (await client.start())["session_id"]
    revoke_key(stack.addresses["storage"], key_id)
    reply = await status_of(stack.base, key)
    assert reply.status_code == 401 and "revoked" in reply.json()["error"]["message"]
    assert (await refused_upgrade(stack.ws, key)).status == 401


async def test_the_websocket_takes_the_token_as_a_query_parameter(stack):
    key, _ = create_key(stack.addresses["storage"], "dave")
    async with VoiceClient(f"{stack.ws}?access_token={key}", token="") as client:
        assert (await client.start())["session_id"]
    async with httpx.AsyncClient(base_url=stack.base) as http:
        assert (await http.get("/v1/conversations", params={"access_token": key})).status_code == 200
    # uvicorn logs each request target: the token in it is redacted.
    log = stack.processes["gateway"].log_path.read_text()
    assert "access_token=<redacted>" in log and key not in log


@pytest.fixture(scope="module")
def issuer():
    return Issuer(ISSUER)


@pytest.fixture()
def jwt_gateway(gateway_with, issuer):
    with jwks_server(issuer) as jwks_url:
        yield gateway_with(
            env={
                "ECHO_GATEWAY_JWT_ISSUER": ISSUER,
                "ECHO_GATEWAY_JWT_AUDIENCE": AUDIENCE,
                "ECHO_GATEWAY_JWT_JWKS_URL": jwks_url,
            }
        )


async def test_jwts_verified_against_the_issuers_jwks(jwt_gateway, issuer):
    good = issuer.token(sub="oidc-alice", aud=AUDIENCE)
    assert (await status_of(jwt_gateway, good)).status_code == 200
    async with VoiceClient(jwt_gateway.replace("http://", "ws://") + "/v1/voice", token=good) as client:
        assert (await client.start())["session_id"]
    # Cognito access tokens name the app client in client_id, not aud.
    assert (await status_of(jwt_gateway, issuer.token(client_id=AUDIENCE))).status_code == 200
    stranger = Issuer(ISSUER, kid="test-key")  # same kid, another key: the signature does not verify
    refused = {
        "expired": issuer.token(aud=AUDIENCE, lifetime_s=-120),
        "another audience": issuer.token(aud="someone-else"),
        "another issuer": Issuer("https://evil.test").token(aud=AUDIENCE),
        "badly signed": stranger.token(aud=AUDIENCE),
        "no exp": issuer.token(aud=AUDIENCE, exp=None),
    }
    for why, token in refused.items():
        reply = await status_of(jwt_gateway, token)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthorized", why
    assert "expired" in (await status_of(jwt_gateway, refused["expired"])).json()["error"]["message"]
    ws = jwt_gateway.replace("http://", "ws://") + "/v1/voice"
    assert (await refused_upgrade(ws, refused["expired"])).status == 401
    # API keys still work beside JWTs.
    assert (await status_of(jwt_gateway, auth_headers()["Authorization"][7:])).status_code == 200


def not_found_shape(reply: httpx.Response, secret: str) -> tuple[int, str, str]:
    error = reply.json()["error"]
    return reply.status_code, error["code"], re.sub(re.escape(secret), "<id>", error["message"])


async def test_another_users_conversation_looks_like_one_that_does_not_exist(stack):
    alice, _ = create_key(stack.addresses["storage"], "alice-" + uuid.uuid4().hex[:6])
    bob, _ = create_key(stack.addresses["storage"], "bob-" + uuid.uuid4().hex[:6])
    async with VoiceClient(stack.ws, token=alice) as client:
        started = await client.start(output_audio=OutputAudio(playback="none"))
        await client.send(InputText(text="Please remember the word pineapple."))
        assert (await client.collect_turn()).done
    conversation_id = started["conversation_id"]
    async with httpx.AsyncClient(base_url=stack.base, headers=auth_headers(alice)) as http:
        await wait_for_turns(stack.base, conversation_id, 1, headers=auth_headers(alice))
        turn = (await http.get(f"/v1/conversations/{conversation_id}")).json()["turns"][0]
        audio_path = f"/v1/conversations/{conversation_id}/audio/{turn['output_audio_key']}"
        assert (await http.get(audio_path)).status_code == 200
    missing = "conv-" + uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=stack.base, headers=auth_headers(bob)) as http:
        listed = (await http.get("/v1/conversations")).json()["conversations"]
        assert conversation_id not in [c["conversation_id"] for c in listed]
        for path in ("/v1/conversations/{}", f"/v1/conversations/{{}}/audio/{turn['output_audio_key']}"):
            theirs = await http.get(path.format(conversation_id))
            nobodys = await http.get(path.format(missing))
            assert theirs.status_code == 404
            assert not_found_shape(theirs, conversation_id) == not_found_shape(nobodys, missing)
        deleted = await http.delete(f"/v1/conversations/{conversation_id}")
        assert not_found_shape(deleted, conversation_id) == not_found_shape(
            await http.delete(f"/v1/conversations/{missing}"), missing
        )
    resumes = []
    for target in (conversation_id, missing):
        async with VoiceClient(stack.ws, token=bob) as client:
            await client.send({"type": "session.start", "conversation_id": target})
            error = await client.expect("error")
            resumes.append((error["code"], error["message"].replace(target, "<id>")))
    assert resumes[0] == resumes[1] and resumes[0][0] == "conversation_not_found"
    # The owner still has it all, and deleting it removes it.
    async with httpx.AsyncClient(base_url=stack.base, headers=auth_headers(alice)) as http:
        assert (await http.get(f"/v1/conversations/{conversation_id}")).status_code == 200
        assert (await http.delete(f"/v1/conversations/{conversation_id}")).status_code == 204
        assert (await http.get(f"/v1/conversations/{conversation_id}")).status_code == 404
        assert (await http.get(audio_path)).status_code == 404


async def test_a_cross_origin_websocket_is_refused(stack):
    headers = auth_headers()
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(stack.ws, origin="https://evil.example", additional_headers=headers):
            pass
    assert refused.value.response.status_code == 403
    async with websockets.connect(stack.ws, origin=stack.base, additional_headers=headers) as ws:
        await ws.send('{"type": "session.start"}')
        assert "session.started" in await ws.recv()


async def test_a_foreign_host_header_is_refused(stack):
    async with httpx.AsyncClient(base_url=stack.base, headers=auth_headers()) as http:
        reply = await http.get("/v1/conversations", headers={"Host": "attacker.example"})
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_host"
        assert (await http.get("/v1/conversations")).status_code == 200
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            stack.ws, additional_headers={**auth_headers(), "Host": "attacker.example"}
        ):
            pass
    assert refused.value.response.status_code == 400


async def test_each_limit_gives_its_code_and_the_session_goes_on(stack, gateway_with):
    base = gateway_with(
        env={
            "ECHO_GATEWAY_TURNS_PER_MINUTE": "1",
            "ECHO_GATEWAY_SESSIONS_PER_USER": "1",
            "ECHO_GATEWAY_REQUESTS_PER_MINUTE": "2",
        }
    )
    ws = base.replace("http://", "ws://") + "/v1/voice"
    key, _ = create_key(stack.addresses["storage"], "erin-" + uuid.uuid4().hex[:6])
    async with VoiceClient(ws, token=key) as client:
        await client.start(output_audio=OutputAudio(playback="none"))
        await client.send(InputText(text="Say one word."))
        assert (await client.collect_turn()).done
        await client.send(InputText(text="Say another word."))
        error = await client.expect("error")
        assert error["code"] == "rate_limited" and 0 < error["retry_after_s"] <= 60
        # A second session of the same user is over the limit; the first goes on.
        async with VoiceClient(ws, token=key) as second:
            refused = await second.expect("error")
            assert refused["code"] == "rate_limited" and refused["retry_after_s"] > 0
        await client.send(SessionEnd())
        assert (await client.expect("session.ended"))["unsaved_turns"] == 0
    for _ in range(2):
        assert (await status_of(base, key)).status_code == 200
    limited = await status_of(base, key)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1

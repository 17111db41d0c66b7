"""A turn stored through the AWS storage backend (DynamoDB + S3 on moto), and its audio served by an S3
presigned URL the REST API redirects to."""

from __future__ import annotations

import io
import wave

import httpx
import pytest

from echo_voice.client import VoiceClient
from tests.aws.storage_standin import aws_stand_in
from tests.e2e.auth import auth_headers, create_key
from tests.e2e.test_voice_turn import wait_for_turns
from tests.servicetools import start_gateway, start_grpc_service


@pytest.fixture(scope="module")
def aws_gateway(stack, log_dir):
    server, aws_env = aws_stand_in(log_dir)
    storage, address = start_grpc_service("storage", {"ECHO_STORAGE_SERVICE": "aws", **aws_env}, log_dir)
    env = {f"ECHO_{n.upper()}_ADDR": a for n, a in stack.addresses.items()} | {"ECHO_STORAGE_ADDR": address}
    gateway, base = start_gateway(
        env | {"ECHO_GATEWAY_MAX_TOKENS": "40"}, log_dir, name="gateway-aws-storage"
    )
    key, _ = create_key(address, "aws-storage-user")
    yield base, key
    gateway.stop()
    storage.stop()
    server.stop()


async def test_turn_saved_in_dynamodb_with_audio_behind_presigned_urls(aws_gateway):
    aws_gateway, key = aws_gateway
    async with VoiceClient(aws_gateway.replace("http://", "ws://") + "/v1/voice", token=key) as client:
        started = await client.start()
        await client.send({"type": "input.text", "text": "Say good morning."})
        result = await client.collect_turn()
        assert result.done and result.audio
    conversation = await wait_for_turns(aws_gateway, started["conversation_id"], 1, headers=auth_headers(key))
    turn = conversation["turns"][0]
    assert turn["client_input"] == "Say good morning." and turn["agent_response"] == result.reply_text
    assert turn["metadata"]["usage"]["output_tokens"] > 0
    async with httpx.AsyncClient(base_url=aws_gateway, headers=auth_headers(key)) as http:
        path = f"/v1/conversations/{started['conversation_id']}/audio/{turn['output_audio_key']}"
        redirect = await http.get(path)
        assert redirect.status_code == 307
        assert "X-Amz-Signature=" in redirect.headers["location"]
    async with httpx.AsyncClient() as s3:  # a presigned URL needs no (and takes no) bearer token
        audio = await s3.get(redirect.headers["location"])
    assert audio.status_code == 200
    with wave.open(io.BytesIO(audio.content)) as w:
        assert w.getnframes() / w.getframerate() > 0.3

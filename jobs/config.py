"""The job config: one YAML file, validated with pydantic, shared by every stage.

```yaml
input: ../data/samples        # folder, glob, list file, fsspec URL, or a list of these
out: ../runs/example          # or an fsspec URL: s3://bucket/run (out_storage_options: {...})
audio: {sr: 16000, mono: true}
frames: {n_fft: 512, hop_length: 160}   # also win_length, window, fft_precision: auto|double|single
features: {mfcc: {n_mfcc: 20, n_mels: 40}, rms: {}}
compute: {device: cpu, workers: 2, batch_seconds: 600}
```

Relative paths in a config file (``input``, ``out``, ``labels.csv``) resolve against the folder
of the config file, so a config runs the same from any working directory; paths given on the
command line (``--input``, ``--out``) resolve against the working directory as usual.

Every error names the key that is wrong (``features.mfcc.n_mfcc: ...``); the CLI turns it into one
line and exit status 2.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from jobs.cluster import ClusterConfig  # the compute.cluster section (owned by jobs/cluster.py)
from jobs.errors import UsageError
from jobs.train_config import LabelsConfig, ScoreConfig, SegmentsConfig, SplitConfig, TrainConfig

__all__ = [
    "AudioConfig", "FramesConfig", "ComputeConfig", "JobConfig", "FEATURES", "STAGES",
    "load_config", "parse_config", "as_job_config", "feature_config", "config_hash", "feature_dims",
]

STAGES = ("extract", "train", "score")

# Upper bounds on settings that otherwise run a job out of memory (or past the platform's timers)
# instead of stopping at the config. Each message says the bound.
MAX_SR = 1_000_000  # Hz: above any audio ADC (768 kHz ultrasound recorders)
MAX_N_FFT = 65536  # 2**16 samples per frame (1.4 s at 48 kHz); the tables and STFT grow with it
MAX_MEL_BYTES = 2**28  # a mel filterbank (n_mels x n_fft//2+1 float64) of at most 256 MiB
MAX_CHUNK_FRAMES = 65536  # 8 x the longest chunk the plan picks itself (8192)
MAX_CHUNK_BYTES = 2**28  # a task holds at least one chunk of every feature (float32): 256 MiB
MAX_HANG_SECONDS = 7 * 24 * 3600.0  # a week; the task's timer (faulthandler) overflows near 1e10 s


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudioConfig(_Section):
    """Decoding: every file is mixed to mono and resampled (soxr, high quality) to ``sr``."""

    sr: int = Field(default=16000, gt=0, description="sample rate of the store (Hz); one store, one rate")
    mono: bool = Field(default=True, description="mix channels to mono (the store holds one channel)")

    @field_validator("sr", mode="before")
    @classmethod
    def _sr_required(cls, value):
        if value is None:
            raise ValueError("a feature store has one sample rate: give a number (e.g. 16000), not null")
        return value

    @field_validator("sr")
    @classmethod
    def _sr_bound(cls, value):
        if value > MAX_SR:
            raise ValueError(f"must be at most {MAX_SR} Hz")
        return value

    @field_validator("mono")
    @classmethod
    def _mono_only(cls, value):
        if not value:
            raise ValueError("the feature store holds one channel per file; only mono: true is supported")
        return value


class FramesConfig(_Section):
    """STFT framing shared by every feature (time-domain features use ``n_fft`` as frame length)."""

    n_fft: int = Field(default=512, gt=1)
    hop_length: int = Field(default=160, gt=0)
    win_length: int | None = Field(default=None, gt=0)
    window: str = "hann"
    fft_precision: Literal["auto", "double", "single"] = Field(
        default="auto",
        description="FFT arithmetic (featurelib.set_fft_precision): auto (float32, with the frames "
                    "whose mel bands float32 rounding could move redone in float64: librosa parity "
                    "on any signal), double (every frame in float64, as librosa) or single (every "
                    "frame in float32; within 1e-3 dB of librosa's log-mel on recorded audio, not "
                    "on pure tones)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.n_fft > MAX_N_FFT:
            raise _KeyError("n_fft", f"must be at most {MAX_N_FFT} (the window, mel and STFT "
                                     "buffers grow with it)")
        if self.hop_length > self.n_fft:
            raise _KeyError("hop_length", f"hop_length={self.hop_length} must not exceed n_fft={self.n_fft}")
        if self.win_length is not None and self.win_length > self.n_fft:
            raise _KeyError("win_length", f"win_length={self.win_length} must not exceed n_fft={self.n_fft}")
        if self.n_fft % 2:
            raise _KeyError("n_fft", f"n_fft={self.n_fft} must be even")
        if self.window not in ("hann", "hanning"):  # checked before any output is touched (a
            # window typo with --overwrite cleared a finished run, then stopped)
            from featurelib import ParameterError
            from featurelib.framing import get_window

            try:
                get_window(self.window, self.win_length or self.n_fft, n_fft=self.n_fft)
            except ParameterError as exc:
                raise _KeyError("window", f"{exc} (names as scipy.signal.get_window takes them: "
                                          "hann, hamming, blackman, boxcar, ...)") from None
        return self


class ComputeConfig(_Section):
    """Where and how the work runs."""

    device: Literal["cpu", "cuda", "auto"] = "cpu"
    workers: int | None = Field(default=None, ge=1, description="worker processes (default: CPU cores)")
    batch_seconds: float = Field(default=600.0, gt=0, description="audio seconds per task (upper bound; long files are split into parts of about this length where the parts give the samples of one pass)")
    min_batches: int = Field(default=32, ge=1, description="split the corpus into at least this many tasks")
    block_seconds: float = Field(default=120.0, gt=0, description="files longer than this stream in blocks")
    hang_seconds: float = Field(
        default=600.0, gt=0,
        description="a task still running after this many seconds plus its audio's duration is "
                    "stopped, and the file it was decoding (a decoder stuck on a damaged file) "
                    "is left out on its next attempt; a header read in the plan still running "
                    "after this many seconds starts the command again without that file")
    chunk_frames: int | None = Field(default=None, gt=0, description="Zarr chunk length in frames (default: 2048 to 8192, from the batch size)")
    probe: Literal["auto", "coordinator", "workers"] = Field(
        default="auto", description="where the input headers are read before planning: auto = on the "
        "workers for a corpus of 1,000 URLs or more (each worker keeps requests in flight) or of 32 "
        "files or more whose length is counted by decoding them (AAC/M4A, WMA, ...), else here")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    @field_validator("hang_seconds")
    @classmethod
    def _hang_bound(cls, value):
        if value > MAX_HANG_SECONDS:
            raise ValueError(f"must be at most {MAX_HANG_SECONDS:.0f} (a week)")
        return value

    @field_validator("chunk_frames")
    @classmethod
    def _chunk_bound(cls, value):
        if value is not None and value > MAX_CHUNK_FRAMES:
            raise ValueError(f"must be at most {MAX_CHUNK_FRAMES} (8 x the plan's longest chunk; "
                             "every task holds a chunk of each feature in memory)")
        return value


class _KeyError(ValueError):
    """A validation error about one named key inside a section."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


class _KeyErrors(ValueError):
    """Several :class:`_KeyError` at once (every bad feature of a config, not the first only)."""

    def __init__(self, errors: list[_KeyError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.key}: {e}" for e in errors))


# ---------------------------------------------------------------- features
# name -> {kwarg: default}. The job computes one STFT per batch and derives every feature from it;
# these are the keyword arguments each feature accepts in a config (frame settings come from
# `frames`, the sample rate from `audio`).
_MEL = {"n_mels": 128, "fmin": 0.0, "fmax": None, "htk": False, "norm": "slaney"}
FEATURES: dict[str, dict[str, Any]] = {
    "melspectrogram": {**_MEL, "power": 2.0, "db": False, "top_db": 80.0},
    "mfcc": {"n_mfcc": 20, "dct_type": 2, "norm": "ortho", "lifter": 0.0, "top_db": 80.0,
             "n_mels": 128, "fmin": 0.0, "fmax": None, "htk": False, "mel_norm": "slaney"},
    "rms": {},
    "zero_crossing_rate": {"threshold": 1e-10},
    "amplitude_envelope": {},
    "short_time_energy": {},
    "spectral_centroid": {},
    "spectral_bandwidth": {"p": 2.0, "norm": True},
    "spectral_rolloff": {"roll_percent": 0.85},
    "spectral_flatness": {"amin": 1e-10, "power": 2.0},
    "mean_frequency": {"power": 2.0},
    "median_frequency": {"power": 2.0},
    "band_energy_ratio": {"split_frequency": 2000.0, "power": 2.0},
}
_NUMBER = (int, float)
_MEL_NORM = (str, type(None), *_NUMBER)  # librosa.filters.mel: 'slaney', None or a p-norm's p
# types by argument name; _FEATURE_TYPES where one name means different things (norm). A number
# is never a bool (a bool is an int in Python): only the arguments typed bool take true/false.
_TYPES = {
    "n_mels": int, "n_mfcc": int, "dct_type": int, "fmin": _NUMBER, "fmax": (*_NUMBER, type(None)),
    "htk": bool, "norm": (str, type(None), *_NUMBER), "mel_norm": _MEL_NORM,
    "power": _NUMBER, "db": bool, "top_db": (*_NUMBER, type(None)), "lifter": _NUMBER,
    "threshold": _NUMBER, "p": _NUMBER, "roll_percent": _NUMBER, "amin": _NUMBER,
    "split_frequency": _NUMBER,
}
_FEATURE_TYPES = {("melspectrogram", "norm"): _MEL_NORM, ("spectral_bandwidth", "norm"): bool}
_MEL_NORM_KEY = {"melspectrogram": "norm", "mfcc": "mel_norm"}
_MEL_NORM_RULE = "must be 'slaney', null or a number >= 0 (a p-norm)"


def _brief(value) -> str:
    """``repr(value)``, cut short (a 400-digit integer)."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:20]}..."


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def _check_feature(name: str, kwargs: dict, audio: AudioConfig, frames: FramesConfig) -> dict:
    """The feature's kwargs with defaults filled in; raises _KeyError naming the bad key."""
    if name not in FEATURES:
        raise _KeyError(name, f"unknown feature; choose from {', '.join(sorted(FEATURES))}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise _KeyError(name, f"expected a mapping of keyword arguments, got {kwargs!r}")
    defaults = FEATURES[name]
    out = dict(defaults)
    for key, value in kwargs.items():
        where = f"{name}.{key}"
        if key not in defaults:
            allowed = ", ".join(sorted(defaults)) or "none"
            raise _KeyError(where, f"unknown argument for {name} (allowed: {allowed})")
        expected = _FEATURE_TYPES.get((name, key), _TYPES[key])
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if expected is int:
            if not isinstance(value, int) or isinstance(value, bool):
                raise _KeyError(where, f"expected an integer, got {value!r}")
        elif expected is bool:
            if not isinstance(value, bool):
                raise _KeyError(where, f"expected true or false, got {value!r}")
        elif not isinstance(value, expected) or isinstance(value, bool):
            if expected is _MEL_NORM:
                raise _KeyError(where, f"{_MEL_NORM_RULE}, got {_brief(value)}")
            raise _KeyError(where, f"wrong type: {_brief(value)}")
        elif is_number and not _finite(value):
            raise _KeyError(where, f"must be a finite number, got {_brief(value)}")
        elif is_number and key not in ("norm", "mel_norm"):
            value = float(value)
        out[key] = value
    n_bins = frames.n_fft // 2 + 1
    nyquist = audio.sr / 2
    if "n_mels" in out:
        if out["n_mels"] < 1:
            raise _KeyError(f"{name}.n_mels", "must be at least 1")
        if out["n_mels"] > n_bins:
            raise _KeyError(f"{name}.n_mels", f"n_mels={out['n_mels']} exceeds n_fft//2+1={n_bins} frequency bins")
        fmax = nyquist if out["fmax"] is None else out["fmax"]
        if not 0 <= out["fmin"] < fmax:
            raise _KeyError(f"{name}.fmin", f"need 0 <= fmin < fmax ({fmax} Hz)")
        if fmax > nyquist:
            raise _KeyError(f"{name}.fmax", f"fmax={fmax} exceeds the Nyquist frequency {nyquist} Hz")
        mel_bytes = out["n_mels"] * n_bins * 8
        if mel_bytes > MAX_MEL_BYTES:
            raise _KeyError(f"{name}.n_mels", f"n_mels={out['n_mels']} x {n_bins} frequency bins: a "
                            f"{mel_bytes / 2**20:.0f} MiB mel filterbank (at most {MAX_MEL_BYTES >> 20} MiB)")
        norm_key = _MEL_NORM_KEY[name]
        norm = out[norm_key]
        if norm != "slaney" and norm is not None and (isinstance(norm, str) or norm < 0):
            raise _KeyError(f"{name}.{norm_key}", f"{_MEL_NORM_RULE}, got {_brief(norm)}")
    if name == "mfcc":
        if out["n_mfcc"] < 1:
            raise _KeyError("mfcc.n_mfcc", "must be at least 1")
        if out["n_mfcc"] > out["n_mels"]:
            raise _KeyError("mfcc.n_mfcc", f"n_mfcc={out['n_mfcc']} exceeds n_mels={out['n_mels']}")
        if out["dct_type"] not in (1, 2, 3, 4):
            raise _KeyError("mfcc.dct_type", "must be 1, 2, 3 or 4")
        if out["norm"] not in (None, "ortho"):
            raise _KeyError("mfcc.norm", "must be 'ortho' or null")
        if out["lifter"] < 0:
            raise _KeyError("mfcc.lifter", "must be >= 0")
    if out.get("top_db") is not None and out["top_db"] < 0:
        raise _KeyError(f"{name}.top_db", "must be >= 0 or null")
    if "power" in out and out["power"] <= 0:
        raise _KeyError(f"{name}.power", "must be > 0")
    if name == "melspectrogram" and out["db"] and out["power"] != 2.0:
        raise _KeyError("melspectrogram.db", "db: true needs power: 2 (power_to_db)")
    if name == "spectral_rolloff" and not 0 < out["roll_percent"] < 1:
        raise _KeyError("spectral_rolloff.roll_percent", "must lie in (0, 1)")
    if name == "spectral_bandwidth" and out["p"] <= 0:
        raise _KeyError("spectral_bandwidth.p", "must be > 0")
    if name == "band_energy_ratio" and not 0 < out["split_frequency"] < nyquist:
        raise _KeyError("band_energy_ratio.split_frequency", f"must lie in (0, {nyquist}) Hz")
    if "amin" in out and out["amin"] <= 0:
        raise _KeyError(f"{name}.amin", "must be > 0")
    if "threshold" in out and out["threshold"] < 0:
        raise _KeyError(f"{name}.threshold", "must be >= 0")
    return out


def feature_dims(features: dict[str, dict]) -> dict[str, int]:
    """Columns per frame of each feature (mel bands, coefficients, or 1)."""
    dims = {}
    for name, kw in features.items():
        if name == "melspectrogram":
            dims[name] = kw["n_mels"]
        elif name == "mfcc":
            dims[name] = kw["n_mfcc"]
        else:
            dims[name] = 1
    return dims


def _union(annotation) -> tuple:
    """The types an annotation admits: the members of a union, else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _number_errors(annotation, value, where: str) -> list[_KeyError]:
    """Numbers given as true/false, and NaN or infinite floats, in a value for ``annotation``.

    pydantic takes ``true`` for an int (1) and ``.nan``/``.inf`` for a float; in this config they
    are always mistakes. Walks the sections' models (every section file's), lists and values."""
    members = _union(annotation)
    if any(m in (int, float) for m in members) and bool not in members:
        if isinstance(value, bool):
            what = "a number" if float in members else "an integer"
            return [_KeyError(where, f"expected {what}, got {value!r}")]
        number = value
        if isinstance(value, str) and float in members and str not in members:
            try:
                number = float(value)
            except ValueError:
                number = None  # pydantic says what is wrong with it
        if isinstance(number, float) and not math.isfinite(number):
            return [_KeyError(where, f"must be a finite number, got {_brief(value)}")]
    errors = []
    for member in members:
        if isinstance(value, dict) and inspect.isclass(member) and issubclass(member, BaseModel):
            errors += _model_number_errors(member, value, where)
        elif isinstance(value, list) and typing.get_origin(member) is list and typing.get_args(member):
            for i, item in enumerate(value):
                errors += _number_errors(typing.get_args(member)[0], item, f"{where}.{i}")
    return errors


def _model_number_errors(model: type[BaseModel], data: dict, prefix: str = "") -> list[_KeyError]:
    errors = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key in data:
            errors += _number_errors(field.annotation, data[key], f"{prefix}.{key}" if prefix else key)
    return errors


class JobConfig(_Section):
    """The whole YAML file."""

    input: str | list[str] | None = None
    out: str | None = None
    # fsspec storage options for an `out` URL (s3://, gs://, ...): credentials, endpoint, ...
    out_storage_options: dict[str, Any] | None = None
    audio: AudioConfig = Field(default_factory=AudioConfig)
    frames: FramesConfig = Field(default_factory=FramesConfig)
    features: dict[str, dict[str, Any] | None] = Field(
        default_factory=lambda: {"mfcc": {}, "rms": {}})
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    labels: LabelsConfig | None = None
    segments: SegmentsConfig | None = None
    split: SplitConfig | None = None
    train: TrainConfig | None = None
    score: ScoreConfig | None = None
    stages: list[Literal["extract", "train", "score"]] | None = Field(default=None, min_length=1)

    @field_serializer("out_storage_options")
    def _masked_options(self, value):
        """Dumped (manifest, messages) with every value masked: they may hold credentials."""
        if value is None:
            return None
        return {key: "***" for key in value}

    @model_validator(mode="before")
    @classmethod
    def _strict_numbers(cls, data):
        if isinstance(data, dict):
            errors = _model_number_errors(cls, data)
            if len(errors) == 1:
                raise errors[0]
            if errors:
                raise _KeyErrors(errors)
        return data

    @field_validator("input", "out", mode="before")
    @classmethod
    def _paths_as_text(cls, value):
        """A ``pathlib.Path`` (or a list of them) from Python code, as the text it names."""
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, (list, tuple)):
            return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        return value

    @field_validator("input")
    @classmethod
    def _non_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("an empty list of inputs")
        if isinstance(value, str) and not value.strip():
            raise ValueError("an empty input")
        if isinstance(value, list) and any(isinstance(v, str) and not v.strip() for v in value):
            raise ValueError("an empty input in the list")
        return value

    @field_validator("out")
    @classmethod
    def _out_named(cls, value):
        if value is not None and not value.strip():
            raise ValueError("an empty path: name the run folder (or leave out: and give --out)")
        if value is not None and "\x00" in value:  # no file system takes one (os.open: ValueError)
            raise ValueError("holds a NUL character: no folder can be named so")
        return value

    @model_validator(mode="after")
    def _features_valid(self):
        if not self.features:
            raise _KeyError("features", "name at least one feature")
        normalised, errors = {}, []
        for name, kwargs in self.features.items():
            try:
                normalised[name] = _check_feature(name, kwargs, self.audio, self.frames)
            except _KeyError as exc:  # go on: one message names every bad feature
                errors.append(_KeyError(f"features.{exc.key}", str(exc)))
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise _KeyErrors(errors)
        self.features = normalised
        chunk = self.compute.chunk_frames
        columns = sum(feature_dims(normalised).values())
        if chunk is not None and chunk * columns * 4 > MAX_CHUNK_BYTES:
            raise _KeyError("compute.chunk_frames", f"{chunk} frames x {columns} feature columns: "
                            f"{chunk * columns * 4 / 2**20:.0f} MiB per chunk, held by every task "
                            f"(at most {MAX_CHUNK_BYTES >> 20} MiB)")
        return self

    @property
    def stage_list(self) -> list[str]:
        """The stages to run: as given, or extract plus train/score when their sections exist."""
        if self.stages is not None:
            return list(self.stages)
        stages = ["extract"]
        if self.train is not None:
            stages.append("train")
        if self.score is not None:
            stages.append("score")
        return stages


# ---------------------------------------------------------------- loading


def _describe(error: ValidationError) -> str:
    """One line naming the key (dotted path) of the first problem."""
    parts = []
    for item in error.errors():
        loc = [str(p) for p in item.get("loc", ()) if p not in ("function-after[_consistent(), FramesConfig]",)]
        ctx_error = item.get("ctx", {}).get("error")
        message = item.get("msg", "invalid")
        if isinstance(ctx_error, (_KeyError, _KeyErrors)):
            key_parts = [p for p in loc if not p.startswith("function-")]
            for one in getattr(ctx_error, "errors", [ctx_error]):
                key = ".".join([*key_parts, one.key]) if key_parts else one.key
                parts.append(f"{key}: {one}")
            continue
        loc = [p for p in loc if not p.startswith(("function-", "str", "list[", "literal["))]
        key = ".".join(loc) or "config"
        if item.get("type") == "extra_forbidden":
            message = "unknown key"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        parts.append(f"{key}: {message}")
    return "; ".join(dict.fromkeys(parts))


def parse_config(data: dict, *, base_dir: str | os.PathLike | None = None) -> JobConfig:
    """Validate a config mapping; relative paths resolve against ``base_dir`` (config's folder)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError("config: expected a mapping of sections (input, out, audio, ...)")
    try:
        cfg = JobConfig.model_validate(data)
    except ValidationError as exc:
        raise UsageError(_describe(exc)) from None
    if base_dir is not None:
        base = Path(base_dir)
        cfg.input = _resolve_inputs(cfg.input, base)
        if cfg.out is not None:
            cfg.out = _resolve_path(cfg.out, base)
        if cfg.labels is not None and cfg.labels.csv:
            cfg.labels.csv = _resolve_path(cfg.labels.csv, base)
        if cfg.score is not None and cfg.score.model:  # a model folder named in the file
            cfg.score.model = _resolve_path(cfg.score.model, base)
        tls = cfg.compute.cluster.tls
        if tls is not None:  # certificates, like every path in the file: against its folder
            for key in ("ca_file", "cert", "key"):
                setattr(tls, key, _resolve_path(getattr(tls, key), base))
    return cfg


def as_job_config(config, *, strict: bool = True) -> JobConfig:
    """The validated :class:`JobConfig` for what Python code passes a job: a ``JobConfig``
    (validated again, so that fields set after loading, ``cfg.compute.workers = -2``, are
    checked as the YAML's are), the path of a YAML file, or a mapping of sections.

    Raises :class:`~jobs.errors.UsageError` naming the key, or ``TypeError`` for anything else
    (``strict=False``: anything else is returned as it is, for train and score, which read the
    sections they need with defaults where an object lacks them).
    """
    if isinstance(config, JobConfig):
        data = config.model_dump(mode="python", exclude={"out_storage_options"}, warnings=False)
        checked = parse_config(data)
        checked.out_storage_options = config.out_storage_options  # dumped masked: kept as set
        return checked
    if isinstance(config, (str, os.PathLike)):
        return load_config(config)
    if isinstance(config, dict):
        return parse_config(config)
    if not strict and all(hasattr(config, section) for section in ("train", "score", "labels")):
        return config  # train and score read these sections, with defaults where they are None
    raise TypeError(f"config: expected a jobs.config.JobConfig, the path of a YAML config or a "
                    f"mapping of its sections, not {type(config).__name__}")


def _is_url(text: str) -> bool:
    return "://" in text


def _resolve_path(text: str, base: Path) -> str:
    text = os.path.expanduser(text)
    if _is_url(text) or os.path.isabs(text):
        return text
    return os.path.normpath(str(base / text))


def _resolve_inputs(value, base: Path):
    if value is None:
        return None
    if isinstance(value, list):
        return [_resolve_path(v, base) for v in value]
    return _resolve_path(value, base)


def _unique_key_loader():
    """PyYAML's SafeLoader refusing a key given twice in one mapping (it keeps the last one
    silently: a second ``features:`` would drop the first's features unseen)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the safe loader says what is wrong with it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark)
        return loader.construct_mapping(node, deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return UniqueKeyLoader


def load_config(path: str | os.PathLike) -> JobConfig:
    """Read and validate a YAML config; relative paths inside resolve against its folder."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise UsageError(f"config {path} is a folder: give the YAML file")
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_bytes().decode("utf-8"), Loader=_unique_key_loader())  # a SafeLoader
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                         "save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {_yaml_error_words(exc)}") from None
    try:
        return parse_config(data, base_dir=path.resolve().parent)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _yaml_error_words(exc) -> str:
    """A YAML parse error on one line: where (line and column, 1-based), what, and the line
    itself (PyYAML's own text quotes the line with a caret under it, which one line loses)."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        return " ".join(str(exc).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None:
        where += f" ({context.removeprefix('while ')} from line {start.line + 1}, column {start.column + 1})"
    lines = (mark.buffer or "").replace("\0", "").split("\n")  # PyYAML ends its buffer with NUL
    line = lines[mark.line].rstrip() if mark.line < len(lines) else ""
    return f"{where}; the line reads {line!r}" if line else where


# ---------------------------------------------------------------- identity


def feature_config(cfg: JobConfig) -> dict:
    """The part of the config that decides the numbers in the store (normalised, defaults filled)."""
    return {
        "sr": cfg.audio.sr,
        "mono": cfg.audio.mono,
        "n_fft": cfg.frames.n_fft,
        "hop_length": cfg.frames.hop_length,
        "win_length": cfg.frames.win_length or cfg.frames.n_fft,
        "window": cfg.frames.window,
        "features": {name: dict(sorted(kw.items())) for name, kw in sorted(cfg.features.items())},
        # only when not the default, so that stores written before the option keep their hash
        # (they were float64; "auto" gives the same numbers within librosa parity)
        **({"fft_precision": cfg.frames.fft_precision} if cfg.frames.fft_precision != "auto" else {}),
    }


def config_hash(feature_cfg: dict) -> str:
    """sha256 hex of the canonical JSON of a :func:`feature_config` mapping."""
    canonical = json.dumps(feature_cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _signature_check() -> None:  # pragma: no cover - developer aid
    """Assert that every configured kwarg is a keyword of the featurelib function of that name."""
    import featurelib

    for name, defaults in FEATURES.items():
        params = inspect.signature(getattr(featurelib, name)).parameters
        for key in defaults:
            if key in ("db", "top_db", "n_mels", "fmin", "fmax", "htk", "mel_norm"):
                continue
            assert key in params, (name, key)

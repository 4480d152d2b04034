"""Real test audio written on the spot: tones, noise, chirps, silence, clipping and broken files.

Plain functions with no pytest dependency, so tests and benchmarks can both use them::

    from audio_factory import write_tone, make_mixed_corpus

Every writer takes the destination path first, creates missing parent folders, writes the file
with soundfile (the format comes from the extension unless ``format`` is given) and returns the
path as a :class:`pathlib.Path`. Signals are float32 in [-1, 1]; multichannel files hold the same
signal scaled differently per channel so that a mono mix is not trivially one channel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = [
    "tone", "noise", "chirp", "write_audio", "write_tone", "write_noise", "write_chirp",
    "write_silence", "write_clipping", "write_empty", "write_not_audio", "write_truncated",
    "write_nan_wav", "write_inf_wav", "mp3_writable", "make_mixed_corpus",
]


# ---------------------------------------------------------------- signals


def _n_samples(seconds: float, sr: int) -> int:
    return max(int(round(seconds * sr)), 0)


def _spread(y: np.ndarray, channels: int) -> np.ndarray:
    """``(n,)`` -> ``(n, channels)`` with channel ``c`` scaled by ``1 - 0.5 * c / channels``."""
    if channels == 1:
        return y.astype(np.float32)
    gains = 1.0 - 0.5 * np.arange(channels) / channels
    return (y[:, None] * gains[None, :]).astype(np.float32)


def tone(sr: int, seconds: float, *, channels: int = 1, freq: float = 440.0,
         amplitude: float = 0.5) -> np.ndarray:
    """A sine of ``freq`` Hz: ``(n,)`` for one channel, ``(n, channels)`` otherwise (soundfile's layout)."""
    t = np.arange(_n_samples(seconds, sr)) / sr
    return _spread(amplitude * np.sin(2 * np.pi * freq * t), channels)


def noise(sr: int, seconds: float, *, channels: int = 1, amplitude: float = 0.3,
          seed: int = 0) -> np.ndarray:
    """Gaussian white noise with standard deviation ``amplitude / 3``, clipped to [-amplitude, amplitude]."""
    rng = np.random.default_rng(seed)
    n = _n_samples(seconds, sr)
    y = np.clip(rng.standard_normal(n) * amplitude / 3.0, -amplitude, amplitude)
    return _spread(y, channels)


def chirp(sr: int, seconds: float, *, channels: int = 1, f0: float = 50.0, f1: float | None = None,
          amplitude: float = 0.5) -> np.ndarray:
    """An exponential sweep from ``f0`` to ``f1`` Hz (default: 0.45 * sr)."""
    f1 = 0.45 * sr if f1 is None else f1
    n = _n_samples(seconds, sr)
    t = np.arange(n) / sr
    duration = max(seconds, 1.0 / sr)
    k = np.log(f1 / f0) / duration
    phase = 2 * np.pi * f0 * (np.exp(k * t) - 1.0) / k
    return _spread(amplitude * np.sin(phase), channels)


# ---------------------------------------------------------------- good files


def write_audio(path, data: np.ndarray, sr: int, *, subtype: str | None = None,
                format: str | None = None) -> Path:
    """Write ``data`` (``(n,)`` or ``(n, channels)``) with soundfile; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format is not None and format.upper() == "OGG" and subtype is None:
        subtype = "VORBIS"
    sf.write(str(path), data, sr, subtype=subtype, format=format)
    return path


def write_tone(path, sr: int, seconds: float, channels: int = 1, subtype: str | None = "PCM_16",
               freq: float = 440.0, format: str | None = None, amplitude: float = 0.5) -> Path:
    """A sine tone file. ``subtype=None`` takes the format's default (needed for OGG/MP3)."""
    fmt = (format or Path(path).suffix.lstrip(".")).upper()
    if fmt in {"OGG", "OGA", "MP3", "OPUS"} and subtype == "PCM_16":
        subtype = None  # compressed formats have no PCM subtype
    if fmt == "OPUS":
        format, subtype = "OGG", "OPUS"
    return write_audio(path, tone(sr, seconds, channels=channels, freq=freq, amplitude=amplitude),
                       sr, subtype=subtype, format=format)


def write_noise(path, sr: int, seconds: float, channels: int = 1, subtype: str | None = "PCM_16",
                amplitude: float = 0.3, seed: int = 0, format: str | None = None) -> Path:
    """A white-noise file."""
    return write_audio(path, noise(sr, seconds, channels=channels, amplitude=amplitude, seed=seed),
                       sr, subtype=subtype, format=format)


def write_chirp(path, sr: int, seconds: float, channels: int = 1, subtype: str | None = "PCM_16",
                f0: float = 50.0, f1: float | None = None, format: str | None = None) -> Path:
    """An exponential sweep file."""
    return write_audio(path, chirp(sr, seconds, channels=channels, f0=f0, f1=f1), sr,
                       subtype=subtype, format=format)


def write_silence(path, sr: int, seconds: float, channels: int = 1,
                  subtype: str | None = "PCM_16", format: str | None = None) -> Path:
    """Digital silence: every sample exactly zero."""
    shape = (_n_samples(seconds, sr),) if channels == 1 else (_n_samples(seconds, sr), channels)
    return write_audio(path, np.zeros(shape, np.float32), sr, subtype=subtype, format=format)


def write_clipping(path, sr: int, seconds: float, channels: int = 1,
                   subtype: str | None = "PCM_16", freq: float = 220.0, gain: float = 4.0,
                   format: str | None = None) -> Path:
    """A sine driven ``gain`` times past full scale and hard-clipped to [-1, 1]."""
    y = np.clip(gain * tone(sr, seconds, channels=1, freq=freq, amplitude=1.0), -1.0, 1.0)
    return write_audio(path, _spread(y, channels), sr, subtype=subtype, format=format)


# ---------------------------------------------------------------- broken files


def write_empty(path) -> Path:
    """A 0-byte file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_not_audio(path, text: str = "This is a plain text file, not audio.\n") -> Path:
    """Text with an audio name (e.g. ``notes.wav``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text * 40)
    return path


def write_truncated(path, sr: int = 16000, seconds: float = 1.0, where: str = "data") -> Path:
    """A PCM_16 WAV cut short.

    ``where="data"``: cut in the middle of the sample data, on an odd byte (half a sample at the
    end); the header still announces every frame. ``where="header"``: cut inside the 44-byte
    RIFF header, so no format chunk can be read.
    """
    path = Path(path)
    write_tone(path, sr, seconds)
    data = path.read_bytes()
    if where == "data":
        cut = 44 + (len(data) - 44) // 2 + 1
    elif where == "header":
        cut = 20
    else:
        raise ValueError(f"where must be 'data' or 'header', not {where!r}")
    path.write_bytes(data[:cut])
    return path


def write_nan_wav(path, sr: int = 16000, seconds: float = 0.5, channels: int = 1) -> Path:
    """A 32-bit FLOAT WAV with a run of NaN samples in the middle."""
    y = tone(sr, seconds, channels=channels)
    mid = y.shape[0] // 2
    y[mid:mid + 10] = np.nan
    return write_audio(path, y, sr, subtype="FLOAT")


def write_inf_wav(path, sr: int = 16000, seconds: float = 0.5) -> Path:
    """A 32-bit FLOAT WAV with +inf and -inf samples."""
    y = tone(sr, seconds)
    y[5] = np.inf
    y[-5] = -np.inf
    return write_audio(path, y, sr, subtype="FLOAT")


def mp3_writable() -> bool:
    """Whether this libsndfile can write MP3 (1.1+ built with LAME)."""
    return "MP3" in sf.available_formats() and sf.check_format("MP3", "MPEG_LAYER_III")


# ---------------------------------------------------------------- corpus


def make_mixed_corpus(root) -> dict:
    """Write a folder tree with every awkward case a corpus has.

    Returns ``{"good": [paths...], "bad": {path: expected_stage}, "skipped": [paths...]}`` with
    absolute string paths, sorted. ``good`` files decode to finite audio; ``bad`` maps each broken
    file to the stage of the extract job that must report it: ``"probe"`` (header unreadable:
    empty, not audio, header cut, or a header that announces more data than the file holds) or
    ``"decode"`` (header fine, samples not: NaN, inf). ``skipped`` are things a folder scan must not take as audio (a text file, a folder
    named ``x.wav``). A symlink to a file in another folder is listed under its link path.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    good: list[Path] = []
    bad: dict[Path, str] = {}

    # formats x rates x channels
    good.append(write_tone(root / "tone_8k_mono.wav", 8000, 0.5, freq=300.0))
    good.append(write_tone(root / "tone_16k_stereo.flac", 16000, 0.6, channels=2, freq=500.0))
    good.append(write_tone(root / "tone_22k_mono.ogg", 22050, 0.7, freq=700.0))
    good.append(write_chirp(root / "chirp_44k_stereo.wav", 44100, 0.8, channels=2, subtype="PCM_24"))
    good.append(write_noise(root / "noise_48k_6ch.wav", 48000, 0.4, channels=6, subtype="FLOAT"))
    good.append(write_tone(root / "tone_48k_mono.aiff", 48000, 0.3, freq=1000.0))
    if mp3_writable():
        good.append(write_tone(root / "tone_44k_mono.mp3", 44100, 0.5, freq=440.0))
    # very short and silent
    good.append(write_audio(root / "one_sample.wav", np.array([0.25], np.float32), 16000))
    good.append(write_tone(root / "shorter_than_a_frame.wav", 16000, 100 / 16000))
    good.append(write_silence(root / "silent.wav", 16000, 0.5))
    good.append(write_clipping(root / "clipping.wav", 22050, 0.5))
    # awkward names and nesting
    good.append(write_tone(root / "name with spaces.wav", 16000, 0.2))
    good.append(write_tone(root / "ünïcødé – Ωmega.flac", 22050, 0.2, freq=880.0))
    good.append(write_tone(root / "UPPER.WAV", 8000, 0.2))
    good.append(write_tone(root / "nested" / "deeper" / "deep.wav", 16000, 0.3))
    good.append(write_tone(root / "x.wav" / "inside_a_folder_named_x.wav", 16000, 0.2))
    # a link to a file that lives outside the tree
    outside = root.parent / f"{root.name}_outside"
    target = write_tone(outside / "target.wav", 16000, 0.25, freq=660.0)
    link = root / "link_to_outside.wav"
    if not link.exists():
        os.symlink(target, link)
    good.append(link)

    # broken files
    bad[write_empty(root / "empty.wav")] = "probe"
    bad[write_not_audio(root / "not_audio.wav")] = "probe"
    bad[write_truncated(root / "truncated_header.wav", where="header")] = "probe"
    bad[write_truncated(root / "truncated_data.wav", where="data")] = "probe"
    bad[write_nan_wav(root / "nan.wav")] = "decode"
    bad[write_inf_wav(root / "inf.wav")] = "decode"

    skipped = [root / "x.wav"]
    notes = root / "notes.txt"
    notes.write_text("not audio, and not named like audio\n")
    skipped.append(notes)

    return {
        "good": sorted(str(p.absolute()) for p in good),
        "bad": {str(p.absolute()): stage for p, stage in sorted(bad.items())},
        "skipped": sorted(str(p.absolute()) for p in skipped),
    }

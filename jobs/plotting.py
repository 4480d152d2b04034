"""``audiofeat plot``: draw a recording, or the stored features of one file of a run, to an image.

Two forms::

    audiofeat plot FILE    --kind waveform|spectrum|spectrogram|mel|mfcc|all -o FILE.png
    audiofeat plot OUT_DIR --file-id ID --kind mel|mfcc|<stored feature>|all -o FILE.png

The file form decodes with :func:`featurelib.load` and computes with featurelib (``stft``,
``melspectrogram``, ``power_to_db``/``amplitude_to_db``, ``mfcc``); matplotlib draws with the Agg
backend, so no display is needed. Units: seconds and sample amplitude for the waveform; dBFS
against Hz on a log axis for the spectrum and the spectrogram (a full-scale sine reads 0 dBFS);
dB relative to the loudest mel band on a mel-spaced axis (labelled in Hz) for the mel spectrogram;
coefficient number against seconds for the MFCCs.

Long recordings stay quick and small in memory: the waveform is drawn as a min/max envelope with
one column per pixel, streamed from the file in blocks; when the window holds more STFT frames
than ``MAX_FRAMES``, the spectral views are computed from ``MAX_FRAMES`` frames spread evenly over
it (each decoded on its own with ``featurelib.load(offset=..., duration=...)``), and the title says
so. The run-directory form decodes nothing: it reads the file's rows ``[frame_start, frame_stop)``
from ``features.zarr`` and, when ``scores/events.parquet`` exists, shades the file's events.

Exit status: 0 image written; 1 the audio could not be decoded (one ``path: reason`` line);
2 bad usage (unknown kind, missing run directory or file id, unwritable output).
"""

from __future__ import annotations

import argparse
import os
import sys

from jobs.inspection import format_duration

__all__ = ["add_arguments", "main", "FILE_KINDS", "MAX_FRAMES"]

FILE_KINDS = ("waveform", "spectrum", "spectrogram", "mel", "mfcc")
MAX_FRAMES = 2048  # STFT frames computed for one image; longer windows are sampled evenly
MAX_DECODED_SAMPLES = 1 << 24  # samples (all channels) decoded at once; past this, sample frames
BLOCK_FRAMES = 1 << 16  # frames read per step while streaming the waveform envelope
READ_FRAMES = 1 << 16  # stored frames read per step when a long file is reduced to a picture
PANEL_HEIGHT_PX = 360
DEFAULT_WIDTH_PX = 1200
DPI = 100
KIND_ALIASES = {"mel": "melspectrogram", "melspectrogram": "melspectrogram"}
UNITS = {  # y-axis units of stored per-frame features
    "rms": "amplitude", "amplitude_envelope": "amplitude", "short_time_energy": "energy",
    "zero_crossing_rate": "crossings per sample", "spectral_centroid": "Hz",
    "spectral_bandwidth": "Hz", "spectral_rolloff": "Hz", "mean_frequency": "Hz",
    "median_frequency": "Hz", "spectral_flatness": "ratio", "band_energy_ratio": "ratio",
    "snr": "dB",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="an audio file, or a run directory with --file-id")
    parser.add_argument("--kind", default="all",
                        help="waveform, spectrum, spectrogram, mel, mfcc or all (default); for a "
                             "run directory: mel, mfcc, any stored feature name, or all")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.png",
                        help="image to write (.png; .pdf and .svg work too)")
    parser.add_argument("--file-id", help="with a run directory: the file_id (or path) to draw")
    parser.add_argument("--offset", type=float, default=0.0, metavar="S",
                        help="start this many seconds into the recording")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="draw at most this many seconds")
    parser.add_argument("--sr", type=int, default=None,
                        help="resample to this rate before the analysis (default: native rate)")
    parser.add_argument("--n-fft", type=int, default=None, metavar="N",
                        help="FFT length (default: librosa's 2048 at 22.05 kHz and up, scaled down "
                             "with the rate to a power of two: 1024 at 16 kHz, 512 at 8 kHz)")
    parser.add_argument("--hop-length", type=int, default=None, metavar="H",
                        help="samples between frames (n_fft // 4)")
    parser.add_argument("--n-mels", type=int, default=None, metavar="M",
                        help="mel bands (default: 128, or as many as the FFT's bins give each band "
                             "at least one: fewer at a high rate with a short FFT, or a low rate)")
    parser.add_argument("--n-mfcc", type=int, default=20, metavar="K", help="MFCCs (20)")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH_PX, metavar="PX",
                        help=f"image width in pixels ({DEFAULT_WIDTH_PX})")
    parser.add_argument("--height", type=int, default=None, metavar="PX",
                        help=f"image height in pixels ({PANEL_HEIGHT_PX} per panel + title)")


# ---------------------------------------------------------------- checks


def _check_args(args) -> None:
    import math

    from jobs.errors import UsageError

    if not math.isfinite(args.offset) or args.offset < 0:
        raise UsageError(f"--offset must be a number of seconds >= 0, not {args.offset}")
    if args.duration is not None and (not math.isfinite(args.duration) or args.duration <= 0):
        raise UsageError(f"--duration must be a number of seconds > 0, not {args.duration}")
    for name in ("sr", "n_fft", "hop_length", "n_mels", "n_mfcc", "width", "height"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0, not {value}")
    if args.width < 200 or (args.height is not None and args.height < 150):
        raise UsageError("the image must be at least 200 x 150 pixels")
    # bounds past which matplotlib, the mel basis or the transform only fail late or not at all
    from jobs.config import MAX_N_FFT, MAX_SR

    for name, most in (("width", 20000), ("height", 20000), ("n_mels", 1024), ("n_mfcc", 1024),
                       ("n_fft", MAX_N_FFT), ("sr", MAX_SR)):
        value = getattr(args, name)
        if value is not None and value > most:
            raise UsageError(f"--{name.replace('_', '-')} must be at most {most}, not {value}")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    ext = os.path.splitext(args.output)[1].lower()
    if ext not in (".png", ".pdf", ".svg"):
        raise UsageError(f"-o {args.output}: the image must end in .png, .pdf or .svg")
    # the folder is made when the picture is saved (_save): a refusal on the way leaves nothing
    existing = out_dir
    while not os.path.isdir(existing):
        if os.path.lexists(existing):
            raise UsageError(f"-o {args.output}: {existing} is not a folder")
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK):
        from jobs.errors import OutputError

        try:
            read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):
            read_only = False
        if read_only:  # exit 3, as when a write fails there (and as query -o says it)
            raise OutputError(f"-o {args.output}: {existing} is on a read-only file system")
        raise UsageError(f"-o {args.output}: {existing} is not writable")


def _kinds_for_file(kind: str) -> list[str]:
    from jobs.errors import UsageError

    kind = kind.lower()
    if kind == "all":
        return list(FILE_KINDS)
    if kind == "melspectrogram":
        kind = "mel"
    if kind not in FILE_KINDS:
        raise UsageError(f"--kind {kind}: choose one of {', '.join(FILE_KINDS)} or all "
                         "(stored features need a run directory and --file-id)")
    return [kind]


# ---------------------------------------------------------------- analysis of a file


def _envelope_columns(n: int, n_cols: int):
    """Column edges so that sample ``i`` belongs to column ``i * n_cols // n``."""
    import numpy as np

    cols = np.arange(n_cols + 1, dtype=np.int64)
    return -((-cols * n) // n_cols)  # ceil(c * n / n_cols): first sample of column c


def _envelope_from_array(y, n_cols: int):
    """``(channels, n)`` -> (lo, hi) of shape ``(channels, n_cols)``: min/max per column."""
    import numpy as np

    edges = _envelope_columns(y.shape[-1], n_cols)[:-1]
    return np.minimum.reduceat(y, edges, axis=-1), np.maximum.reduceat(y, edges, axis=-1)


def _envelope_streamed(path, start: int, count: int, n_cols: int):
    """Min/max per column over native frames ``[start, start + count)``, read in blocks."""
    import numpy as np
    import soundfile as sf

    from featurelib import AudioDecodeError
    from featurelib.io import (
        _open_soundfile,
        _read_blocks,
        _seek,
        _truncation_reason,
        part_way_reason,
    )

    with _open_soundfile(path) as (handle, shown):
        reason = _truncation_reason(handle)
        if reason is not None:
            raise AudioDecodeError(shown, reason)
        channels = handle.channels
        lo = np.full((channels, n_cols), np.inf, np.float32)
        hi = np.full((channels, n_cols), -np.inf, np.float32)
        edges = _envelope_columns(count, n_cols)
        done = 0
        try:
            if start:
                _seek(handle, start)  # by reading where the codec cannot seek (GSM 6.10)
            for block in _read_blocks(handle, count, BLOCK_FRAMES):
                if block.size == 0:
                    continue
                if not np.isfinite(block).all():
                    raise AudioDecodeError(shown, "holds non-finite samples (NaN or infinity)")
                first, last = done, done + block.shape[0]
                c0 = int(np.searchsorted(edges, first, side="right") - 1)
                c1 = int(np.searchsorted(edges, last - 1, side="right") - 1)
                local = np.maximum(edges[c0:c1 + 1] - first, 0)
                block_t = block.T
                lo[:, c0:c1 + 1] = np.minimum(lo[:, c0:c1 + 1], np.minimum.reduceat(block_t, local, axis=1))
                hi[:, c0:c1 + 1] = np.maximum(hi[:, c0:c1 + 1], np.maximum.reduceat(block_t, local, axis=1))
                done = last
        except sf.LibsndfileError as exc:
            raise AudioDecodeError(shown, part_way_reason(exc)) from None
        if done < count:
            raise AudioDecodeError(shown, f"truncated: decoding stopped {count - done} frames early")
    return lo, hi


def fitting_n_mels(sr: float, n_fft: int, most: int = 128) -> int:
    """The most mel bands, up to ``most``, of which none is empty: each band's triangle holds an
    FFT bin (librosa warns "Empty filters detected" otherwise, and the picture shows blank rows:
    128 bands over 0-192 kHz with 2,048-point FFTs at 384 kHz, or 0-500 Hz at 1 kHz)."""
    import numpy as np

    from featurelib.spectrum import _hz_to_mel, _mel_to_hz

    bins = np.fft.rfftfreq(n_fft, 1.0 / sr)
    for n in range(most, 1, -1):
        edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0, False), _hz_to_mel(sr / 2, False), n + 2), False)
        inside = np.searchsorted(bins, edges[2:], "left") - np.searchsorted(bins, edges[:-2], "right")
        if np.all(inside > 0):
            return n
    return 1


def default_n_fft(sr: float) -> int:
    """librosa's 2048 samples at 22.05 kHz (93 ms), the same duration or less at other rates,
    as a power of two between 256 and 2048."""
    import math

    return int(min(2048, max(256, 2 ** math.floor(math.log2(2048 * sr / 22050)))))


def _seeks(path) -> bool:
    """Whether the decoder of ``path`` seeks quickly (libsndfile, most formats). A file FFmpeg
    decodes through PyAV seeks by decoding from its start, and an MP3 opened afresh by walking
    its frames up to the offset (mpg123 keeps no index between openings): each sampled frame
    would cost a pass (88 s for 2,048 frames of a 7-minute MP3), where one pass reads them all."""
    from featurelib.io import _open_soundfile

    with _open_soundfile(path) as (handle, _):
        return bool(handle.seekable()) and str(handle.format) != "MP3"


class _PieceReader:
    """``featurelib.load(path, sr=sr, offset=..., duration=...)`` for offsets that never go
    back, from one sequential pass: the same native frames, channel mean and resampling, so the
    same numbers, without decoding the file again from its start for every piece."""

    def __init__(self, path, sr):
        from featurelib.io import _open_soundfile

        self._context = _open_soundfile(path)
        self.handle, self.shown = self._context.__enter__()
        self.native = int(self.handle.samplerate)
        self.sr = sr
        self.at = 0  # native frame the handle reads next
        self.buffer = None  # (frames, channels) starting at self.start
        self.start = 0

    def load(self, offset: float, duration: float):
        import numpy as np

        from featurelib import AudioDecodeError
        from featurelib._sequential import read_float32  # blocks of an MP3 join up exactly
        from featurelib.io import _resample, channel_mean

        first = int(offset * self.native)
        last = min(first + int(duration * self.native), int(self.handle.frames))
        channels = self.handle.channels
        if self.buffer is None or first < self.start:
            self.buffer = np.zeros((0, channels), np.float32)
            self.start = self.at
        if first > self.at:  # skip ahead: decode and drop
            while self.at < first:
                block = read_float32(self.handle, min(first - self.at, 1 << 16))
                if not block.shape[0]:
                    break
                self.at += block.shape[0]
            self.buffer, self.start = np.zeros((0, channels), np.float32), self.at
        drop = max(first - self.start, 0)
        self.buffer, self.start = self.buffer[drop:], self.start + drop
        if last > self.at:
            block = read_float32(self.handle, last - self.at)
            self.at += block.shape[0]
            self.buffer = np.concatenate([self.buffer, block])
        block = self.buffer[first - self.start:last - self.start]
        if not np.isfinite(block).all():
            raise AudioDecodeError(self.shown, "holds non-finite samples (NaN or infinity)")
        y = block[:, 0] if channels == 1 else channel_mean(block)
        return y if self.sr == self.native else _resample(y, self.native, self.sr)

    def close(self):
        self._context.__exit__(None, None, None)


class FileAnalysis:
    """Everything the five views of one recording need, computed with featurelib."""

    def __init__(self, path, *, kinds, sr, offset, duration, n_fft, hop_length, n_mels, n_mfcc,
                 n_cols):
        import featurelib
        from jobs.discover import shown_path

        self.path = os.fspath(path)
        self.name = shown_path(os.path.basename(self.path))  # a title in any font: UTF-8, one line
        self.meta = featurelib.info(path)
        if self.meta.frames <= 0:
            from featurelib.io import no_frames_reason

            raise featurelib.AudioDecodeError(self.path, no_frames_reason(path))
        native = self.meta.sample_rate
        if offset >= self.meta.duration:
            from jobs.errors import UsageError

            raise UsageError(f"--offset {offset} s is past the end of {self.path} "
                             f"({self.meta.duration:.3f} s)")
        self.sr = sr or native
        self.offset = offset
        start = int(offset * native)
        count = self.meta.frames - start
        if duration is not None:
            count = min(count, int(duration * native))
        if count <= 0:
            from jobs.errors import UsageError

            raise UsageError(f"--duration {duration} s is shorter than one sample")
        self.window_s = count / native
        if n_fft is None:
            n_fft = default_n_fft(self.sr)
        if hop_length is None:
            hop_length = max(n_fft // 4, 1)
        if n_mels is None:
            n_mels = fitting_n_mels(self.sr, n_fft)
        self.n_fft, self.hop_length, self.n_mels, self.n_mfcc = n_fft, hop_length, n_mels, n_mfcc
        self.kinds = kinds
        n_samples = int(round(self.window_s * self.sr))
        n_frames = 1 + n_samples // hop_length
        self.sampled = n_frames > MAX_FRAMES or n_samples * self.meta.channels > MAX_DECODED_SAMPLES
        self.n_sampled = min(MAX_FRAMES, n_frames)
        spectral = any(k != "waveform" for k in kinds)
        if not self.sampled:
            y_multi, _ = featurelib.load(path, sr=self.sr, mono=False, offset=offset,
                                         duration=duration)
            y_multi = y_multi.reshape(-1, y_multi.shape[-1])  # (channels, n)
            self.wave_rate = self.sr
            self.wave_n = y_multi.shape[-1]
            if "waveform" in kinds:
                if self.wave_n <= 4 * n_cols:
                    self.wave = (y_multi, None)
                else:
                    self.wave = _envelope_from_array(y_multi, n_cols)
            y = y_multi[0] if y_multi.shape[0] == 1 else y_multi.mean(axis=0)
            if spectral:
                self._spectra_full(y)
        else:
            if "waveform" in kinds:
                self.wave_rate, self.wave_n = native, count
                self.wave = _envelope_streamed(path, start, count, n_cols)
            if spectral:
                self._spectra_sampled(path, native)

    # -- spectra

    def _spectra_full(self, y):
        import numpy as np

        import featurelib

        self.frames_note = ""
        magnitude = abs(featurelib.stft(y, n_fft=self.n_fft, hop_length=self.hop_length))
        self.frame_times = self.offset + np.arange(magnitude.shape[-1]) * self.hop_length / self.sr
        self._derive(magnitude)

    def _spectra_sampled(self, path, native):
        """``n_sampled`` frames spread evenly over the window, each decoded on its own."""
        import numpy as np

        import featurelib

        n_fft, sr = self.n_fft, self.sr
        half = n_fft // 2
        margin = max(0.02, 64.0 / min(sr, native))  # resampler settling room on each side
        count = self.n_sampled
        centres = self.offset + (np.arange(count) + 0.5) * self.window_s / count
        frames = np.zeros((count, n_fft), np.float32)
        pieces = _PieceReader(path, sr) if not _seeks(path) else None
        try:
            for k, centre in enumerate(centres):
                begin = max(centre - half / sr - margin, 0.0)
                begin_frame = int(begin * native)
                if begin_frame >= self.meta.frames:
                    continue
                if pieces is not None:  # one pass over a file that cannot seek (FFmpeg's formats)
                    piece = pieces.load(begin, n_fft / sr + 2 * margin)
                else:
                    piece, _ = featurelib.load(path, sr=sr, offset=begin, duration=n_fft / sr + 2 * margin)
                first = int(round((centre - begin_frame / native) * sr)) - half
                lo, hi = max(first, 0), min(first + n_fft, piece.shape[-1])
                if hi > lo:
                    frames[k, lo - first:hi - first] = piece[lo:hi]
        except Exception as exc:
            import soundfile as sf

            from featurelib.io import part_way_reason

            if isinstance(exc, sf.LibsndfileError):  # a stream that stops decoding part-way
                raise featurelib.AudioDecodeError(self.path, part_way_reason(exc)) from None
            raise
        finally:
            if pieces is not None:
                pieces.close()
        # one frame per row: an uncentred STFT whose only frame is the row itself
        magnitude = abs(featurelib.stft(frames, n_fft=n_fft, hop_length=n_fft, center=False))[..., 0]
        self.frame_times = centres
        self.frames_note = f"{count} frames sampled every {self.window_s / count:.3g} s"
        self._derive(magnitude.T)

    def _derive(self, magnitude):
        """magnitude ``(bins, frames)`` -> spectrum, spectrogram, mel and MFCC in display units."""
        import numpy as np

        import featurelib

        self.magnitude = magnitude
        window_gain = float(featurelib.get_window("hann", self.n_fft).sum()) / 2.0
        scaled = (magnitude / window_gain).astype(np.float32)  # a full-scale sine peaks at 1.0
        self.freqs = np.arange(magnitude.shape[0]) * self.sr / self.n_fft
        kinds = self.kinds
        if "spectrum" in kinds:
            self.spectrum_db = featurelib.amplitude_to_db(scaled.mean(axis=-1), top_db=120.0)
        if "spectrogram" in kinds:
            self.spectrogram_db = featurelib.amplitude_to_db(scaled, top_db=90.0)
        if "mel" in kinds or "mfcc" in kinds:
            power = (magnitude.astype(np.float32)) ** 2
            mel = featurelib.melspectrogram(S=power, sr=self.sr, n_fft=self.n_fft, n_mels=self.n_mels)
            self.mel_db = featurelib.power_to_db(mel, ref=np.max, top_db=80.0)
            if "mfcc" in kinds:
                # librosa.feature.mfcc(y=...) is the DCT of power_to_db(mel) (ref 1.0, top_db 80)
                self.mfcc = featurelib.mfcc(S=featurelib.power_to_db(mel), n_mfcc=self.n_mfcc)

    def title(self) -> str:
        rate = f"{self.meta.sample_rate} Hz"
        if self.sr != self.meta.sample_rate:
            rate += f" (analysed at {self.sr} Hz)"
        text = f"{self.name} — {rate}, {self.meta.channels} ch, {format_duration(self.meta.duration)}"
        if self.offset > 0 or self.window_s < self.meta.duration - 1e-9:
            text += f" — showing {self.offset:.3f}–{self.offset + self.window_s:.3f} s"
        return text


# ---------------------------------------------------------------- drawing a file


def _time_axis(ax, start, stop):
    ax.set_xlim(start, stop)
    ax.set_xlabel("time (s)")


def _window_axis(ax, a) -> None:
    """The shown window of the recording, the same on every panel of a file."""
    _time_axis(ax, a.offset, a.offset + max(a.window_s, 1.0 / a.sr))


def draw_waveform(ax, a: FileAnalysis) -> None:
    import numpy as np

    wave, hi = a.wave
    channels = wave.shape[0]
    start, stop = a.offset, a.offset + a.wave_n / a.wave_rate
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
               "tab:pink", "tab:gray"]
    for c in range(channels):
        label = f"ch {c + 1}" if channels > 1 else None
        colour = colours[c % len(colours)]
        if hi is None:  # few samples: every sample drawn
            t = a.offset + np.arange(wave.shape[-1]) / a.wave_rate
            marker = "o" if wave.shape[-1] <= 200 else None  # a handful of samples: show each
            ax.plot(t, wave[c], lw=0.8, color=colour, label=label, marker=marker, markersize=3,
                    alpha=0.8 if channels > 1 else 1, clip_on=marker is None)
        else:  # min/max envelope, one column per pixel
            t = start + (np.arange(wave.shape[-1]) + 0.5) * (stop - start) / wave.shape[-1]
            ax.fill_between(t, wave[c], hi[c], color=colour, lw=0.5, label=label,
                            alpha=0.6 if channels > 1 else 1, step="mid")
    peak = float(max(np.max(np.abs(wave)), 0 if hi is None else np.max(np.abs(hi))))
    # full scale; past it where samples go beyond (an MP3's overshoot, a float file's loud peaks),
    # with full scale marked; closer for a quiet window
    limit = max(1.0, peak) if peak > 0.5 or peak == 0 else min(1.0, peak * 1.2)
    ax.set_ylim(-limit * 1.05, limit * 1.05)
    ax.axhline(0.0, color="0.6", lw=0.5)
    if peak > 1.0:
        for level in (-1.0, 1.0):
            ax.axhline(level, color="tab:red", lw=0.6, ls="--", alpha=0.7)
    _window_axis(ax, a)
    ax.set_ylabel("amplitude")
    ax.set_title("waveform" + (" (min/max envelope per pixel)" if hi is not None else ""), fontsize=10)
    if channels > 1:
        ax.legend(loc="upper right", fontsize=8, ncol=min(channels, 6))


def draw_spectrum(ax, a: FileAnalysis) -> None:
    ax.semilogx(a.freqs[1:], a.spectrum_db[1:], lw=0.9)
    ax.set_xlim(a.freqs[1], a.sr / 2)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("magnitude (dBFS)")
    note = f", {a.frames_note}" if a.frames_note else ""
    ax.set_title(f"average spectrum (n_fft {a.n_fft}{note})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)


def _colorbar(fig, mesh, ax, label):
    bar = fig.colorbar(mesh, ax=ax, pad=0.01, fraction=0.04)
    bar.set_label(label)


LOG_ROWS = 480  # rows of the log-frequency image the spectrogram is drawn as


def _log_frequency_rows(values, freqs, n_rows: int = LOG_ROWS):
    """Re-grid ``(bins, frames)`` onto ``n_rows`` log-spaced frequencies (DC left out).

    Each row takes the maximum of the FFT bins inside its band (so narrow peaks among many
    high-frequency bins stay visible), or the nearest bin where the band holds none (low
    frequencies). Returns ``(rows, (log10 lower edge, log10 upper edge))``.
    """
    import numpy as np

    df = freqs[1] - freqs[0]
    lo_hz, hi_hz = freqs[1] / 2 ** 0.5, freqs[-1]
    edges = np.geomspace(lo_hz, hi_hz, n_rows + 1)
    first = np.ceil(edges[:-1] / df).astype(np.int64)
    last = np.floor(edges[1:] / df).astype(np.int64)
    nearest = np.clip(np.rint(np.sqrt(edges[:-1] * edges[1:]) / df).astype(np.int64), 1, len(freqs) - 1)
    rows = np.empty((n_rows, values.shape[-1]), values.dtype)
    for r in range(n_rows):
        a, b = max(first[r], 1), min(last[r], len(freqs) - 1)
        rows[r] = values[a:b + 1].max(axis=0) if b >= a else values[nearest[r]]
    return rows, (np.log10(lo_hz), np.log10(hi_hz))


def _log_hz_ticks(ax, log_lo: float, log_hi: float) -> None:
    import numpy as np

    ticks, labels = [], []
    for decade in range(0, 6):
        for m in (1, 2, 5):
            hz = m * 10 ** decade
            if log_lo <= np.log10(hz) <= log_hi:
                ticks.append(np.log10(hz))
                labels.append(f"{hz // 1000}k" if hz >= 1000 else str(hz))
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels)
    ax.set_ylabel("frequency (Hz, log scale)")


def draw_spectrogram(fig, ax, a: FileAnalysis) -> None:
    step = (a.frame_times[1] - a.frame_times[0]) if len(a.frame_times) > 1 else a.hop_length / a.sr
    rows, (log_lo, log_hi) = _log_frequency_rows(a.spectrogram_db, a.freqs)
    image = _frames_image(ax, rows, a.frame_times, step, (log_lo, log_hi), "magma")
    _log_hz_ticks(ax, log_lo, log_hi)
    _window_axis(ax, a)
    note = f", {a.frames_note}" if a.frames_note else ""
    ax.set_title(f"spectrogram (n_fft {a.n_fft}, hop {a.hop_length}{note})", fontsize=10)
    _colorbar(fig, image, ax, "dBFS")


def _mel_ticks(ax, n_mels, *, fmin, fmax, htk):
    """Label a band-index axis with the centre frequencies of the mel bands, in Hz."""
    import librosa
    import numpy as np

    centres = librosa.mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)[1:-1]
    candidates = [32, 64, 128, 256, 512, 1000, 2000, 4000, 8000, 16000, 32000]
    ticks, labels = [], []
    for hz in candidates:
        if centres[0] <= hz <= centres[-1]:
            position = float(np.interp(hz, centres, np.arange(n_mels)))
            if ticks and position - ticks[-1] < 0.07 * n_mels:  # keep labels apart
                continue
            ticks.append(position)
            labels.append(f"{hz // 1000}k" if hz >= 1000 else str(hz))
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels)
    ax.set_ylabel("frequency (Hz, mel scale)")


def _frames_image(ax, data, times, step, y_range, cmap):
    """``(rows, frames)`` as an image whose column ``k`` is centred on ``times[k]``.

    The last frame is drawn once more after itself, so that the picture reaches the end of the
    recording (the last centred frame lies up to one hop before it); the axis limits cut the rest.
    """
    import numpy as np

    data = np.concatenate([data, data[:, -1:]], axis=1)
    extent = (times[0] - step / 2, times[-1] + 1.5 * step, *y_range)
    return ax.imshow(data, origin="lower", aspect="auto", extent=extent, cmap=cmap,
                     interpolation="nearest")


def _stored_columns(array, lo: int, hi: int, n_cols: int, how: str, times, frame_step: float):
    """Rows ``lo:hi`` of a stored ``(frames, dim)`` array as ``(dim, columns)`` for a picture,
    with ``(low, column times, column step)``.

    Up to ``n_cols`` frames are returned as they are (``low`` None). More are reduced to
    ``n_cols`` columns of consecutive frames, read a stretch of whole columns at a time (a
    3-hour file's mel is 0.5 GB): ``how`` is "max" or "mean" per column, and ``low`` the
    per-column minimum (for a one-number feature's range).
    """
    import numpy as np

    count = hi - lo
    if count <= n_cols:
        return np.asarray(array[lo:hi], dtype=np.float32).T, None, times, frame_step
    edges = _envelope_columns(count, n_cols)  # column c: frames [edges[c], edges[c + 1])
    dim = array.shape[1]
    out = np.empty((dim, n_cols), np.float32)
    low = np.empty((dim, n_cols), np.float32)
    per_read = max(1, READ_FRAMES // max(1, int(np.max(np.diff(edges)))))  # columns per read
    for c0 in range(0, n_cols, per_read):
        c1 = min(n_cols, c0 + per_read)
        block = np.asarray(array[lo + edges[c0]:lo + edges[c1]], dtype=np.float32).T  # (dim, n)
        starts = edges[c0:c1] - edges[c0]
        if how == "max":
            out[:, c0:c1] = np.maximum.reduceat(block, starts, axis=1)
        else:
            out[:, c0:c1] = np.add.reduceat(block, starts, axis=1) / np.diff(edges[c0:c1 + 1])
        low[:, c0:c1] = np.minimum.reduceat(block, starts, axis=1)
    step = count / n_cols * frame_step
    centres = times[0] + (edges[:-1] + (np.diff(edges) - 1) / 2.0) * frame_step
    return out, low, centres, step


def _image(ax, data, times, step, cmap):
    return _frames_image(ax, data, times, step, (-0.5, data.shape[0] - 0.5), cmap)


def draw_mel(fig, ax, a: FileAnalysis) -> None:
    step = (a.frame_times[1] - a.frame_times[0]) if len(a.frame_times) > 1 else a.hop_length / a.sr
    image = _image(ax, a.mel_db, a.frame_times, step, "magma")
    _mel_ticks(ax, a.n_mels, fmin=0.0, fmax=a.sr / 2, htk=False)
    _window_axis(ax, a)
    ax.set_title(f"mel spectrogram ({a.n_mels} bands)", fontsize=10)
    _colorbar(fig, image, ax, "dB (re max)")


# the smallest half-range of the MFCC colour scale (coefficients are DCTs of decibels: a unit is
# far below what a listener tells apart)
MFCC_MIN_COLOUR_RANGE = 1.0


def _mfcc_image(fig, ax, data, times, step) -> None:
    """MFCC image: colour range centred on 0 and set by coefficients 1 and up, so that c0
    (overall loudness) does not wash out the rest; c0 saturates."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    image = _image(ax, data, times, step, "coolwarm")
    rest = data[1:] if data.shape[0] > 1 else data
    # at least one unit: coefficients of digital silence are rounding noise (~1e-4), which a
    # range set by them alone would draw as full-colour stripes
    limit = max(float(np.max(np.abs(rest), initial=0.0)), MFCC_MIN_COLOUR_RANGE)
    image.set_clim(-limit, limit)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("MFCC")
    _colorbar(fig, image, ax, "coefficient")


def draw_mfcc(fig, ax, a: FileAnalysis) -> None:
    step = (a.frame_times[1] - a.frame_times[0]) if len(a.frame_times) > 1 else a.hop_length / a.sr
    _mfcc_image(fig, ax, a.mfcc, a.frame_times, step)
    _window_axis(ax, a)
    ax.set_title(f"MFCC ({a.n_mfcc} coefficients; colour range from c1 up, c0 saturates)",
                 fontsize=10)


MIN_PANEL_HEIGHT_PX = 90


def _figure(n_panels: int, width_px: int, height_px: int | None):
    import matplotlib.pyplot as plt

    least = MIN_PANEL_HEIGHT_PX * n_panels + 60
    if height_px is not None and height_px < least:  # matplotlib squeezed the panels to nothing
        from jobs.errors import UsageError

        raise UsageError(f"--height {height_px}: {n_panels} panel{'s' if n_panels > 1 else ''} need at "
                         f"least {least} pixels ({MIN_PANEL_HEIGHT_PX} each and the title)")
    height_px = height_px or (PANEL_HEIGHT_PX * n_panels + 60)
    fig, axes = plt.subplots(n_panels, 1, figsize=(width_px / DPI, height_px / DPI), dpi=DPI,
                             squeeze=False, layout="constrained")
    return fig, list(axes[:, 0])


def plot_file(args) -> None:
    import warnings

    kinds = _kinds_for_file(args.kind)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analysis = FileAnalysis(args.path, kinds=kinds, sr=args.sr, offset=args.offset,
                                duration=args.duration, n_fft=args.n_fft,
                                hop_length=args.hop_length, n_mels=args.n_mels,
                                n_mfcc=args.n_mfcc, n_cols=args.width)
    for message in dict.fromkeys(str(w.message).splitlines()[0] for w in caught):
        print(f"audiofeat plot: note: {message}", file=sys.stderr)
    fig, axes = _figure(len(kinds), args.width, args.height)
    for kind, ax in zip(kinds, axes):
        if kind == "waveform":
            draw_waveform(ax, analysis)
        elif kind == "spectrum":
            draw_spectrum(ax, analysis)
        elif kind == "spectrogram":
            draw_spectrogram(fig, ax, analysis)
        elif kind == "mel":
            draw_mel(fig, ax, analysis)
        else:
            draw_mfcc(fig, ax, analysis)
    fig.suptitle(analysis.title(), fontsize=11)
    _save(fig, args.output)


def _save(fig, output) -> None:
    import matplotlib.pyplot as plt

    from jobs.errors import UsageError

    try:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        fig.savefig(output, dpi=DPI)
    except OSError as exc:
        raise UsageError(f"-o {output}: cannot write the image ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)


# ---------------------------------------------------------------- a run directory


def _is_run_dir(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "features.zarr")) or os.path.isfile(
        os.path.join(path, "files.parquet"))


def _find_file_row(out_dir: str, file_id: str) -> dict:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from jobs.errors import UsageError

    index = os.path.join(out_dir, "files.parquet")
    if not os.path.isfile(index):
        raise UsageError(f"{out_dir}: no files.parquet (is the run finished?)")
    table = pq.read_table(index, columns=["file_id", "path", "sample_rate", "channels",
                                          "duration_s", "frame_start", "frame_stop"])
    match = table.filter(pc.equal(table["file_id"], file_id))
    if match.num_rows == 0:  # a path works too
        wanted = os.path.abspath(file_id)
        match = table.filter(pc.equal(table["path"], wanted))
    if match.num_rows == 0:
        raise UsageError(f"--file-id {file_id}: not in {index} ({table.num_rows} files; "
                         f"try: audiofeat query {out_dir} \"SELECT file_id, path FROM files\")")
    return match.slice(0, 1).to_pylist()[0]


def _events_for(out_dir: str, file_id: str):
    events = os.path.join(out_dir, "scores", "events.parquet")
    if not os.path.isfile(events):
        return []
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(events)
    if "file_id" not in table.column_names:
        return []
    rows = table.filter(pc.equal(table["file_id"], file_id)).to_pylist()
    return [r for r in rows if "start_s" in r and "end_s" in r]


def _events_in_view(events, x_start: float, x_stop: float, n_px: int) -> list[dict]:
    """The events that overlap ``[x_start, x_stop]``, cut to it, with those of one label less
    than a pixel apart joined: what a picture ``n_px`` wide can show (a night's recording scored
    at a short hop holds tens of thousands of events, each a patch per panel otherwise: minutes
    and gigabytes for a picture of four seconds)."""
    gap = (x_stop - x_start) / max(int(n_px), 1)
    by_label: dict[str, list[list[float]]] = {}
    for event in sorted(events, key=lambda e: float(e["start_s"])):
        start, end = max(float(event["start_s"]), x_start), min(float(event["end_s"]), x_stop)
        if not end > start:
            continue
        spans = by_label.setdefault(str(event.get("label", "event")), [])
        if spans and start - spans[-1][1] <= gap:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    # an edge the window cut is no edge of the event: not outlined
    return [{"label": label, "start_s": a, "end_s": b, "edges": [x for x in (a, b) if x not in (x_start, x_stop)]}
            for label, spans in sorted(by_label.items()) for a, b in spans]


def _shade_events(ax, events, colours, *, over_image: bool) -> None:
    """Mark each event's ``[start_s, end_s)``: a translucent span over a line plot; over an
    image, a solid band along the top edge plus outlines, so the image stays readable."""
    import matplotlib.patches as mpatches

    seen = {}
    for event in events:
        label = str(event.get("label", "event"))
        colour = colours.setdefault(label, f"C{len(colours) % 10}")
        start, end = float(event["start_s"]), float(event["end_s"])
        if over_image:
            ax.axvspan(start, end, ymin=0.95, ymax=1.0, color=colour, alpha=0.95, lw=0)
            for x in event.get("edges", (start, end)):
                ax.axvline(x, color=colour, lw=1.2, ls="--")
        else:
            ax.axvspan(start, end, color=colour, alpha=0.2, lw=0)
        seen[label] = colour
    if seen:  # where it hides the fewest events (upper right hid those at the end of a file)
        handles = [mpatches.Patch(color=c, alpha=0.6, label=lab) for lab, c in sorted(seen.items())]
        ax.legend(handles=handles, loc="best", fontsize=8, title="events", title_fontsize=8,
                  framealpha=0.8)


def plot_run(args) -> None:
    import numpy as np
    import zarr

    import featurelib
    from jobs.discover import shown_path
    from jobs.errors import UsageError

    out_dir = args.path
    if not args.file_id:
        raise UsageError(f"{out_dir} is a run directory: name the file with --file-id ID")
    store_path = os.path.join(out_dir, "features.zarr")
    if not os.path.isdir(store_path):
        raise UsageError(f"{out_dir}: no features.zarr")
    row = _find_file_row(out_dir, args.file_id)
    group = zarr.open_group(store_path, mode="r")
    attrs = dict(group.attrs)
    fc = attrs.get("feature_config", {})
    stored = sorted(name for name, _ in group.arrays())
    wanted = args.kind.lower()
    names = stored if wanted == "all" else [KIND_ALIASES.get(wanted, wanted)]
    missing = [n for n in names if n not in stored]
    if missing:
        raise UsageError(f"--kind {args.kind}: {missing[0]} is not stored in this run "
                         f"(stored: {', '.join(stored)}, or all)")
    sr, hop = fc.get("sr"), fc.get("hop_length")
    frame_step = hop / sr
    first, stop = int(row["frame_start"]), int(row["frame_stop"])
    lo = first + int(np.ceil(args.offset / frame_step - 1e-9))
    hi = stop if args.duration is None else min(stop, lo + max(int(args.duration / frame_step), 1))
    if lo >= hi:
        raise UsageError(f"--offset {args.offset} s is past the end of the file "
                         f"({row['duration_s']:.3f} s)")
    times = (np.arange(lo, hi) - first) * frame_step
    # the shown stretch of the recording: frames are centred, the first at 0 s
    x_start = max(times[0] - frame_step / 2, 0.0)
    x_stop = float(row["duration_s"]) if hi == stop else times[-1] + frame_step / 2
    if x_stop <= x_start:
        x_stop = times[-1] + frame_step / 2
    events = _events_in_view(_events_for(out_dir, row["file_id"]), x_start, x_stop, args.width)
    fig, axes = _figure(len(names), args.width, args.height)
    colours: dict = {}
    n_cols = max(1, 2 * int(args.width))  # at most two columns of frames per pixel
    for name, ax in zip(names, axes):
        kwargs = fc.get("features", {}).get(name, {})
        # a long recording is reduced to the picture's width while it is read, a stretch at a
        # time: per column the loudest frame of a spectrum (an event stays visible), the mean of
        # cepstra and other features, the lowest to the highest value of a one-number feature
        how = "max" if name in ("melspectrogram", "stft") or group[name].shape[1] == 1 else "mean"
        data, low, shown_times, step = _stored_columns(group[name], lo, hi, n_cols, how, times, frame_step)
        if data.shape[0] == 1:
            if low is not None:  # thinned: the range of values each column spans
                ax.fill_between(shown_times, low[0], data[0], lw=0.6, alpha=0.6, step="mid", color="C0")
                # and its middle as a line: a column of one frame spans no range, and a file of
                # about one to two frames per column drew as faint scattered ticks
                ax.plot(shown_times, (low[0] + data[0]) / 2, lw=0.8, color="C0", drawstyle="steps-mid")
            else:
                ax.plot(shown_times, data[0], lw=0.9)
            unit = UNITS.get(name)
            ax.set_ylabel(f"{name} ({unit})" if unit else name)
            ax.grid(True, alpha=0.3)
        elif name == "mfcc":
            _mfcc_image(fig, ax, data, shown_times, step)
        elif name == "melspectrogram":
            label = "dB"
            if not kwargs.get("db", False):  # stored as power
                data = np.asarray(featurelib.power_to_db(data, ref=np.max))
                label = "dB (re max)"
            image = _image(ax, data, shown_times, step, "magma")
            _mel_ticks(ax, data.shape[0], fmin=kwargs.get("fmin", 0.0) or 0.0,
                       fmax=kwargs.get("fmax") or sr / 2, htk=bool(kwargs.get("htk", False)))
            _colorbar(fig, image, ax, label)
        else:
            image = _image(ax, data, shown_times, step, "viridis")
            ax.set_ylabel(f"{name} index")
            _colorbar(fig, image, ax, UNITS.get(name, "value"))
        _time_axis(ax, x_start, x_stop)
        ax.set_title(f"{name} (stored, {sr} Hz, hop {hop})", fontsize=10)
        _shade_events(ax, events, colours, over_image=data.shape[0] > 1)
    title = (f"{shown_path(os.path.basename(row['path']))} — {row['sample_rate']} Hz, {row['channels']} ch, "
             f"{format_duration(row['duration_s'])} — file_id {row['file_id']}")
    if lo > first or hi < stop:
        title += f" — frames {lo - first}–{hi - first} of {stop - first}"
    fig.suptitle(title, fontsize=11)
    _save(fig, args.output)


# ---------------------------------------------------------------- entry point


def main(args) -> int:
    import matplotlib

    matplotlib.use("Agg")

    from featurelib import AudioDecodeError, ParameterError
    from jobs.errors import EXIT_OK, EXIT_SOME_FAILED, UsageError

    _check_args(args)
    path = os.path.expanduser(args.path)
    args.path = path
    if "://" not in path and not os.path.lexists(path):
        raise UsageError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        if not _is_run_dir(path):
            raise UsageError(f"{path} is a folder but not a run directory (no features.zarr): "
                             "give an audio file, or a run directory with --file-id")
        plot_run(args)
        return EXIT_OK
    if args.file_id:
        raise UsageError("--file-id goes with a run directory, not with an audio file")
    try:
        plot_file(args)
    except AudioDecodeError as exc:
        from jobs.discover import shown_path

        print(f"{shown_path(exc.path)}: {exc.reason}", file=sys.stderr)
        return EXIT_SOME_FAILED
    except ParameterError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK

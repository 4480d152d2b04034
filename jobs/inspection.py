"""``audiofeat inspect PATH...``: the audio facts a person asks first, per file.

For every file: format, subtype, sample rate, channels, frames, duration, bit depth, the sample
range (min/max over all channels), peak level and RMS level in dBFS. Files are streamed in blocks,
so a two-hour recording is never held in memory.

Levels are relative to digital full scale (1.0): ``peak_dbfs = 20 * log10(max |x|)`` and
``rms_dbfs = 20 * log10(sqrt(mean(x ** 2)))`` over every sample of every channel, so a full-scale
sine reads 0.0 dBFS peak and -3.01 dBFS RMS. Digital silence reads ``-inf`` in the table and
``null`` in ``--json`` (JSON has no infinity; a number field stays a number or null).

Exit status: 0 every file inspected; 1 some files could not be read (one ``path: reason`` line
each on stderr, the others still reported); 2 a PATH matched nothing.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

from jobs.discover import printable_path, shown_path

__all__ = ["add_arguments", "main", "inspect_file", "resolve_paths"]

BLOCK_FRAMES = 1 << 16  # frames read per step while measuring levels

JSON_KEYS = ("path", "format", "subtype", "sample_rate", "channels", "frames", "duration_s",
             "bit_depth", "min", "max", "peak_dbfs", "rms_dbfs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="audio files, folders (searched recursively for audio files), globs, "
                             "or fsspec URLs of single files (s3://bucket/a.wav)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of objects instead of a table (dBFS of digital silence: null)")
    parser.add_argument("--recursive", "-r", action="store_true", default=True,
                        help="let '**' in a glob match any number of folders, as extract's globs "
                             "do (the default; kept for scripts that pass it)")


# ---------------------------------------------------------------- finding the files


def _walk_folder(root: str, skipped: list[str] | None = None) -> list[str]:
    """What extract would account for under ``root`` (``jobs.discover.folder_entries``: audio
    files, links followed, each real folder once, and the audio names that cannot be read, which
    inspect_file then names with their reason), sorted. macOS AppleDouble companions (``._NAME``)
    are passed over, into ``skipped``."""
    from jobs.discover import folder_entries

    found, passed_over = folder_entries(root)
    if skipped is not None:
        skipped.extend(passed_over)
    return found


def resolve_paths(paths, *, recursive: bool = False,
                  skipped: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Expand files, folders and globs into a list of files.

    Returns ``(files, problems)``: the files in the order given (folders and globs sorted within),
    without duplicates, and one message per PATH that matched nothing. A file named explicitly is
    taken whatever its extension; folders and globs yield only audio extensions (any case), less
    macOS AppleDouble companions (appended to ``skipped``).
    """
    from jobs.discover import _is_glob, audio_extensions

    extensions = audio_extensions()
    files: dict[str, None] = {}
    problems: list[str] = []
    for entry in paths:
        entry = os.path.expanduser(os.fspath(entry))
        if "://" in entry and not entry.startswith("file://"):
            files[entry] = None  # an fsspec URL (s3://, gs://, https://...): opened when inspected
            continue
        if entry.startswith("file://"):
            entry = entry[len("file://"):]
        if os.path.isdir(entry):
            found = _walk_folder(entry, skipped)
            if not found:
                problems.append(f"{entry}: no audio files in this folder")
            files.update(dict.fromkeys(found))
        elif os.path.lexists(entry):
            files[entry] = None  # a file, a broken link, a socket: inspect_file says what is wrong
        elif _is_glob(entry):
            matches = sorted(glob.glob(entry, recursive=recursive))
            found = []
            for match in matches:
                if os.path.isdir(match):
                    found.extend(_walk_folder(match, skipped))
                elif os.path.splitext(match)[1].lower() in extensions:
                    found.append(match)
            if not found:
                what = "nothing" if not matches else "no audio files"
                problems.append(f"{entry}: the pattern matches {what}")
            files.update(dict.fromkeys(found))
        else:
            problems.append(f"{entry}: no such file or folder")
    return list(files), problems


# ---------------------------------------------------------------- measuring one file


def _dbfs(value: float) -> float:
    import math

    return 20.0 * math.log10(value) if value > 0 else float("-inf")


def inspect_file(path) -> dict:
    """Header facts and levels of one file, streamed in blocks.

    Returns a dict with the keys of ``JSON_KEYS``. Raises
    :class:`featurelib.AudioDecodeError` for a file that cannot be read to the end, holds no
    samples, is cut short, or holds NaN/inf samples.
    """
    import numpy as np
    import soundfile as sf

    from featurelib import AudioDecodeError
    from featurelib.io import (
        _frames_to_end,
        _info_from_handle,
        _length_slack,
        _no_frames_reason,
        _ogg_damage_reason,
        _open_soundfile,
        _read_blocks,
        _truncation_reason,
        part_way_reason,
    )

    with _open_soundfile(path) as (handle, shown):
        meta = _info_from_handle(handle, shown)
        if meta.frames <= 0:
            raise AudioDecodeError(shown, _no_frames_reason(handle))
        slack = _length_slack(handle)  # an MP3 header without a length tag: an estimate
        truncated = _truncation_reason(handle) or _ogg_damage_reason(handle)
        if truncated is not None:
            raise AudioDecodeError(shown, truncated)
        lo, hi, sum_sq, n_frames = np.inf, -np.inf, 0.0, 0
        try:
            for block in _read_blocks(handle, _frames_to_end(handle), BLOCK_FRAMES):
                if block.size == 0:
                    continue
                b_lo, b_hi = float(block.min()), float(block.max())
                if not (np.isfinite(b_lo) and np.isfinite(b_hi)):
                    raise AudioDecodeError(shown, "holds non-finite samples (NaN or infinity)")
                lo, hi = min(lo, b_lo), max(hi, b_hi)
                flat = block.reshape(-1)
                if max(-b_lo, b_hi) < 1e-15:  # squares would underflow float32 (denormal audio)
                    flat = flat.astype(np.float64)
                sum_sq += float(flat @ flat)  # BLAS sdot per block, blocks summed in float64
                n_frames += block.shape[0]
        except sf.LibsndfileError as exc:
            raise AudioDecodeError(shown, part_way_reason(exc)) from None
        except (sf.SoundFileError, RuntimeError, ValueError) as exc:
            raise AudioDecodeError(shown, f"decoding failed part-way ({exc})") from None
    if n_frames < meta.frames - slack:
        raise AudioDecodeError(shown, f"truncated: the header announces {meta.frames} frames but only "
                                      f"{n_frames} decode (the file is cut short, or damaged part-way)")
    if n_frames == 0:
        raise AudioDecodeError(shown, "no audio frames could be decoded")
    rms = (sum_sq / (n_frames * meta.channels)) ** 0.5
    return {
        "path": meta.path,
        "format": meta.format,
        "subtype": meta.subtype,
        "sample_rate": meta.sample_rate,
        "channels": meta.channels,
        "frames": meta.frames,
        "duration_s": meta.duration,
        "bit_depth": meta.bit_depth,
        "min": lo,
        "max": hi,
        "peak_dbfs": _dbfs(max(abs(lo), abs(hi))),
        "rms_dbfs": _dbfs(rms),
    }


# ---------------------------------------------------------------- output


def _format_db(value: float) -> str:
    return "-inf" if value == float("-inf") else f"{value:.2f}"


def format_duration(seconds: float) -> str:
    """A duration as people read it: ``12.3 ms``, ``4.500 s``, ``1:02:03.000``."""
    if seconds < 0.01:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 60:
        return f"{seconds:.3f} s"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:06.3f}"


_COLUMNS = (  # header, row -> text, right-aligned?
    ("path", lambda r: shown_path(r["path"]), False),
    ("format", lambda r: r["format"], False),
    ("subtype", lambda r: r["subtype"], False),
    ("rate Hz", lambda r: str(r["sample_rate"]), True),
    ("ch", lambda r: str(r["channels"]), True),
    ("duration", lambda r: format_duration(r["duration_s"]), True),
    ("bits", lambda r: "-" if r["bit_depth"] is None else str(r["bit_depth"]), True),
    ("min", lambda r: f"{r['min']:.4f}", True),
    ("max", lambda r: f"{r['max']:.4f}", True),
    ("peak dBFS", lambda r: _format_db(r["peak_dbfs"]), True),
    ("RMS dBFS", lambda r: _format_db(r["rms_dbfs"]), True),
)


def _width(text: str) -> int:
    """Columns ``text`` takes on a terminal: combining marks (a name in decomposed Unicode, as
    macOS writes them) take none, wide East Asian characters two."""
    import unicodedata

    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def format_table(rows: list[dict]) -> str:
    """An aligned text table, one line per file."""
    cells = [[header for header, _, _ in _COLUMNS]]
    cells += [[text(row) for _, text, _ in _COLUMNS] for row in rows]
    widths = [max(_width(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = []
    for line in cells:
        parts = [" " * (w - _width(cell)) + cell if right else cell + " " * (w - _width(cell))
                 for cell, w, (_, _, right) in zip(line, widths, _COLUMNS)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _json_value(value):
    if isinstance(value, float) and value == float("-inf"):
        return None  # digital silence: -inf dBFS, which JSON cannot write as a number
    return value


def main(args) -> int:
    import json

    from featurelib import AudioDecodeError
    from jobs.errors import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE

    skipped: list[str] = []
    files, problems = resolve_paths(args.paths, recursive=args.recursive, skipped=skipped)
    if skipped:
        from jobs.discover import skipped_note

        print(f"audiofeat inspect: {skipped_note(skipped)}", file=sys.stderr)
    for line in problems:
        print(f"audiofeat inspect: {line}", file=sys.stderr)
    rows, results, failed = [], [], 0
    for path in files:
        try:
            row = inspect_file(path)
        except AudioDecodeError as exc:
            failed += 1
            reason = exc.reason
            if reason.startswith("not a readable audio file"):  # extract's words for a .spx, say
                from jobs.discover import unsupported_reason

                reason = unsupported_reason(str(path)) or reason
            print(f"{shown_path(exc.path)}: {reason}", file=sys.stderr, flush=True)
            results.append({"path": printable_path(exc.path), "error": reason})
            continue
        except Exception as exc:  # noqa: BLE001 - one line per file, never a traceback
            failed += 1
            reason = f"unexpected error ({type(exc).__name__}: {exc})"
            print(f"{shown_path(path)}: {reason}", file=sys.stderr, flush=True)
            results.append({"path": printable_path(str(path)), "error": reason})
            continue
        rows.append(row)
        results.append({key: _json_value(row[key]) for key in JSON_KEYS})
        results[-1]["path"] = printable_path(results[-1]["path"])
        if printable_path(str(path)) != str(path):  # read here, but extract's UTF-8 tables cannot name it
            print(f"audiofeat inspect: note: {shown_path(path)}: the file name is not valid UTF-8 "
                  "(the bytes shown as \\xNN): extract leaves it out until it is renamed",
                  file=sys.stderr, flush=True)
    try:
        if args.json and (results or not problems):  # no "[]" for a command that named nothing
            print(json.dumps(results, indent=2, ensure_ascii=False))
        elif rows:
            print(format_table(rows))
        sys.stdout.flush()
    except BrokenPipeError:  # `audiofeat inspect ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if problems:
        return EXIT_USAGE
    return EXIT_SOME_FAILED if failed else EXIT_OK

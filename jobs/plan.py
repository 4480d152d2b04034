"""Plan: from file headers alone, decide every task's files and every file's rows in the store.

Stages:
1. ``probe`` reads each header (format, rate, channels, frames) without decoding; a file whose
   header cannot be read is a ``probe`` failure.
2. ``frame_count`` predicts the frames each file will give: its resampled length is
   ``ceil(frames * sr / native_sr)`` (librosa's rule: soxr's output, padded to the ceiling) and a
   centred STFT gives ``1 + n // hop_length`` frames.
3. ``make_batches`` groups files by length into duration-balanced batches (about
   ``batch_seconds`` of audio, at least ``min_batches`` batches) and gives every batch a region of
   rows that starts on a chunk boundary and is padded to one, so no two tasks ever write the same
   Zarr chunk. A file longer than ``block_seconds`` is a batch of its own, streamed in blocks of
   whole chunks; one longer than ``batch_seconds`` whose parts give the samples of one pass
   (:func:`splits_exactly`) is split into parts of whole blocks, each a task of its own.

The plan is a pure function of the probed headers and the config, so a rerun makes the same plan;
the job also stores it (``OUT/.plan.json`` + ``OUT/.plan.parquet``) and reuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from dataclasses import dataclass, field

from featurelib.wav import chunks, riff_order

__all__ = [
    "PlannedFile", "Batch", "Plan", "probe", "probe_all", "file_id", "n_resampled", "frame_count",
    "make_batches", "plan_to_tables", "plan_batches", "plan_from_tables", "DEFAULT_CHUNK_FRAMES",
    "auto_chunk_frames", "PackedBatch", "as_batch", "probe_on_cluster", "splits_exactly",
]

DEFAULT_CHUNK_FRAMES = 2048  # the smallest chunk the plan picks by itself
MAX_AUTO_CHUNK_FRAMES = 8192  # the largest


def auto_chunk_frames(batch_frames: float) -> int:
    """The largest chunk length the plan considers for batches of about ``batch_frames``
    frames: the largest power of two within a batch, between 2048 and 8192 frames.

    Every chunk write costs Zarr about as much in bookkeeping as in compression, so fewer,
    bigger chunks write faster (8192 halved the write time of 43,000-frame batches; on FSDD,
    4096 instead of 2048 cut the job's task time by 20 %). :func:`make_batches` takes this
    length unless its regions would pad more than :data:`MAX_PADDING` of the frames, and then
    the largest shorter one that does not.
    """
    chunk = DEFAULT_CHUNK_FRAMES
    while chunk * 2 <= min(batch_frames, MAX_AUTO_CHUNK_FRAMES):
        chunk *= 2
    return chunk


# A batch fills its files up to its region's last chunk boundary, so a long chunk pads little
# where files are short (FSDD: under 1 %); with files of thousands of frames each, whole files
# no longer fit the gap: the plan then takes a shorter chunk, down to 2048
MAX_PADDING = 0.05


def file_id(path: str) -> str:
    """Stable id of an input: the first 16 hex digits of sha1 of its absolute path (or URL)."""
    return hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def n_resampled(frames: int, native_sr: int, sr: int) -> int:
    """Samples after resampling ``frames`` native samples to ``sr`` (librosa: ceil of the ratio)."""
    if native_sr == sr:
        return int(frames)
    return int(math.ceil(frames * (sr / native_sr)))  # librosa's order: the ratio first


def frame_count(n_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT (and of every frame feature) of ``n_samples`` samples."""
    return 1 + n_samples // hop_length


@dataclass(slots=True)
class PlannedFile:
    """One input whose header was read: what it is and where its rows go."""

    path: str
    file_id: str
    size_bytes: int
    format: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int  # native samples per channel, from the header
    duration_s: float
    n_samples: int = 0  # after resampling to the store's rate
    n_frames: int = 0
    frame_start: int = 0
    frame_stop: int = 0
    batch_id: int = -1
    # the file's modification time when its header was read (0: unknown, a URL): a rerun reads
    # a local file again when its size or this changed (jobs.extract.changed_inputs)
    mtime_ns: int = 0


@dataclass
class Batch:
    """One task: whole short files in one padded buffer, or one long file streamed in blocks
    (split across several tasks, its parts, when it is longer than ``part_frames``)."""

    batch_id: int
    kind: str  # "files" | "long"
    region_start: int
    region_stop: int
    block_frames: int  # for "long": frames per block (a multiple of the chunk length)
    files: list[PlannedFile] = field(default_factory=list)
    part_frames: int = 0  # for "long": frames per part (a multiple of block_frames); 0: one task

    @property
    def audio_seconds(self) -> float:
        return sum(f.duration_s for f in self.files)

    @property
    def n_tasks(self) -> int:
        """The tasks that can run at once on this batch: its parts for a split long file, else 1."""
        return len(self.part_ranges()) if self.kind == "long" and self.part_frames else 1

    def part_ranges(self) -> list[tuple[int, int]]:
        """The frames ``[p0, p1)`` of the long file that each part computes (one: the whole)."""
        n = self.files[0].n_frames
        size = self.part_frames or n
        return [(p0, min(p0 + size, n)) for p0 in range(0, n, max(size, 1))]


class PackedBatch:
    """A :class:`Batch` as plain columns: what a task carries to its worker.

    Dask pickles a task's arguments on the client, unpickles them in the scheduler and pickles
    them again for the worker, and every pickling of a batch walked its files one object at a
    time (30,000 files: about a second of the coordinator's CPU, taken from the workers on a
    small machine, before the first task starts). Packed, the files are one tuple of strings and
    numbers per field, which pickle copies in C; the worker rebuilds the batch (:meth:`unpack`).
    """

    __slots__ = ("head", "columns")

    def __init__(self, batch: Batch):
        from operator import attrgetter

        self.head = {name: getattr(batch, name) for name in _BATCH_FIELDS}
        self.columns = list(zip(*map(attrgetter(*_PLANNED_FIELDS), batch.files)))

    def __reduce__(self):
        return (_packed, (self.head, self.columns))

    def unpack(self) -> Batch:
        return Batch(**self.head, files=[PlannedFile(*values) for values in zip(*self.columns)])


def as_batch(batch: Batch | PackedBatch) -> Batch:
    """A task's batch, as :func:`jobs.extract.extract_batch` and the other tasks take it: a
    :class:`Batch`, or the :class:`PackedBatch` the job sends, unpacked."""
    return batch.unpack() if isinstance(batch, PackedBatch) else batch


def _packed(head: dict, columns: list) -> PackedBatch:
    packed = PackedBatch.__new__(PackedBatch)
    packed.head, packed.columns = head, columns
    return packed


@dataclass
class Plan:
    batches: list[Batch]
    failures: list[dict]  # probe (and discover) failures: {path, stage, error_type, message}
    total_frames: int
    chunk_frames: int

    @property
    def files(self) -> list[PlannedFile]:
        return [f for b in self.batches for f in b.files]


# ---------------------------------------------------------------- probe


# (format tag, bits per sample) of a plain RIFF/WAVE fmt chunk -> libsndfile's subtype
_WAV_SUBTYPES = {(1, 8): "PCM_U8", (1, 16): "PCM_16", (1, 24): "PCM_24", (1, 32): "PCM_32",
                 (3, 32): "FLOAT", (3, 64): "DOUBLE"}
_WAV_HEAD_BYTES = 4096


def _only_chunk_of_data(path: str, at: int, size: int) -> bool:
    """Whether the RIFF chunks from byte ``at`` to the end of the file (those after the first
    ``data`` chunk: LIST, id3, cue...) fit it and hold no second ``data`` chunk or ``RIFF``
    header (two files joined), which libsndfile refuses; a few trailing bytes too short for a
    chunk header are ignored, as libsndfile does. No read when ``data`` ends the file, as it
    usually does. False also sends a file to libsndfile, which then judges it."""
    if at >= size:
        return at == size
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            for _ in range(64):  # a few metadata chunks; more is unusual: libsndfile judges
                header = os.pread(fd, 8, at)
                if len(header) < 8:
                    return True
                if header[:4] in (b"data", b"RIFF"):
                    return False
                n = int.from_bytes(header[4:8], "little")
                at += 8 + n + (n & 1)
                if at >= size:
                    return at in (size, size + 1)  # a last odd chunk may lack its pad byte
        finally:
            os.close(fd)
    except OSError:
        return False
    return False


def wav_header(path: str) -> PlannedFile | None:
    """The facts of a plain, complete PCM or float RIFF/WAVE file from its first bytes, or None.

    The standard library reads a WAV header about ten times faster than libsndfile opens the
    file, and the probe runs in the coordinator for every input. Only the unambiguous case is
    taken here: ``fmt `` (PCM 8/16/24/32-bit or IEEE float 32/64, block align = channels x
    sample bytes) before a ``data`` chunk that lies whole inside the file and holds whole
    frames. Anything else (extensible, compressed, RIFX/RF64, truncated, streamed placeholders,
    empty, unreadable) returns None and goes through ``featurelib.info``, which gives the same
    facts as libsndfile and the human reasons of failures.
    """
    import struct

    try:  # os.open/os.read: a third of the cost of a Python file object for 44 bytes
        fd = os.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            size, mtime_ns = st.st_size, st.st_mtime_ns
            head = os.read(fd, 512)
            if b"data" not in head and size > 512:  # long chunks before "data": read more
                head += os.read(fd, _WAV_HEAD_BYTES - 512)
        finally:
            os.close(fd)
    except OSError:
        return None
    if riff_order(head) != "little":
        return None
    fmt = None
    for cid, body, chunk in chunks(head):
        if cid == b"fmt ":
            if fmt is not None or chunk not in (16, 18) or body + 16 > len(head):
                return None
            fmt = struct.unpack_from("<HHIIHH", head, body)  # tag, channels, rate, bytes/s, align, bits
        elif cid == b"data":
            if fmt is None:
                return None
            tag, channels, rate, _, align, bits = fmt
            subtype = _WAV_SUBTYPES.get((tag, bits))
            if subtype is None or channels < 1 or rate < 1 or align != channels * (bits // 8):
                return None
            if chunk == 0 or chunk % align or body + chunk > size or size >= 1 << 32:
                return None  # (over 4 GiB, a size may have wrapped: featurelib.wav reads it)
            if rate > MAX_NATIVE_RATE or not _only_chunk_of_data(path, body + chunk + (chunk & 1), size):
                return None
            frames = chunk // align
            return PlannedFile(path=path, file_id=file_id(path), size_bytes=size, format="WAV",
                               subtype=subtype, sample_rate=rate, channels=channels,
                               frames=frames, duration_s=frames / rate, mtime_ns=mtime_ns)
        elif cid not in (b"fact", b"LIST", b"JUNK", b"junk", b"PAD ", b"bext", b"cue ", b"smpl",
                         b"inst", b"id3 ", b"ID3 ", b"PEAK"):
            return None  # an unusual chunk: let libsndfile judge
    return None


def probe(path: str) -> PlannedFile:
    """Read one header (:func:`wav_header`, else ``featurelib.info``). Raises
    ``AudioDecodeError`` with a human reason on anything that is not a readable, non-empty audio
    file."""
    if "://" not in path:
        fast = wav_header(path)
        if fast is not None:
            return fast
    from featurelib.exceptions import AudioDecodeError
    from featurelib.io import header_and_cut

    if _WATCH:  # libsndfile parses the header in this process: say which file (jobs.crashes)
        _WATCH[0].reading(path)
    try:
        meta, cut = header_and_cut(path)
    finally:
        if _WATCH:
            _WATCH[0].reading(None)
    if cut is not None:  # no frames, or cut short: libsndfile would decode the part there is
        raise AudioDecodeError(path, cut)
    mtime_ns = 0
    if "://" in path:
        import fsspec

        fs, inner = fsspec.core.url_to_fs(path)
        size = int(fs.size(inner) or 0)
    else:
        st = os.stat(path)
        size, mtime_ns = st.st_size, st.st_mtime_ns
    return PlannedFile(path=path, file_id=file_id(path), size_bytes=size, format=meta.format,
                       subtype=meta.subtype, sample_rate=meta.sample_rate, channels=meta.channels,
                       frames=meta.frames, duration_s=meta.frames / meta.sample_rate, mtime_ns=mtime_ns)


def _failure(path: str, stage: str, exc: BaseException) -> dict:
    from jobs.errors import reason_kind

    reason = getattr(exc, "reason", None)  # featurelib.AudioDecodeError carries a human reason
    message = reason or str(exc).strip() or type(exc).__name__
    # typed as the decode stage types the same fault, so that one query groups them
    kind = reason_kind(reason, type(exc).__name__) if reason else type(exc).__name__
    return {"path": path, "stage": stage, "error_type": kind, "message": message}


_WATCH: list = []  # the jobs.crashes.ProbeGuard of the plan being made, while it probes


@contextlib.contextmanager
def watching(guard):
    """:func:`probe` marks each file libsndfile opens in ``guard`` (a ProbeGuard) meanwhile."""
    _WATCH.append(guard)
    try:
        yield guard
    finally:
        _WATCH.remove(guard)


def probe_isolated(path: str, time_limit: float = 300.0) -> PlannedFile | dict:
    """:func:`probe` of a file that a run which died (or was stuck) while probing was opening:
    first in a child process, so that a crash in libsndfile kills the child, not the job. A
    child killed by a signal, or still reading after ``time_limit`` seconds, makes the file a
    failure ("DecoderCrash"); otherwise the file is probed here."""
    import signal
    import subprocess
    import sys

    try:
        child = subprocess.run([sys.executable, "-c", "import sys; from jobs.plan import probe; "
                                "probe(sys.argv[1])", path], capture_output=True, timeout=time_limit)
        code = child.returncode
    except subprocess.TimeoutExpired:
        code = None
    if code is not None and code >= 0:
        try:
            return probe(path)
        except Exception as exc:  # noqa: BLE001 - recorded as for any probe
            return _failure(path, "probe", exc)
    if code is None:
        what = f"did not finish in {time_limit:g} s"
    else:
        try:
            what = f"crashed ({signal.Signals(-code).name})"
        except ValueError:
            what = f"crashed (signal {-code})"
    from jobs.crashes import DECODER_CRASH

    return {"path": path, "stage": "probe", "error_type": DECODER_CRASH,
            "message": f"reading this file's header, the decoder {what} (it ended an earlier run of "
                       "the job): left out"}


def _probe_each(paths: list[str], suspects: frozenset, time_limit: float) -> list:
    out = []
    for path in paths:
        if path in suspects:
            out.append(probe_isolated(path, time_limit))
            continue
        try:
            out.append(probe(path))
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, none stops the job
            out.append(_failure(path, "probe", exc))
    return out


def probe_all(paths: list[str], *, threads: int = 8, chunk: int = 256,
              suspects=(), time_limit: float = 300.0) -> tuple[list[PlannedFile], list[dict]]:
    """Probe every path: (readable files, probe failures), both in the order of ``paths``.

    ``suspects`` (paths a run that died or was stuck while probing was opening:
    jobs.crashes.ProbeGuard) are probed with :func:`probe_isolated` (``time_limit`` seconds).

    Header reads of local files on a local disk are CPU work, and threads only fight over the
    GIL (measured 2x slower with 8 threads on 30,000 WAV clips). Header reads that wait on
    storage (URLs, network file systems) gain from several requests in flight; libsndfile
    releases the GIL while it reads. So URLs go to ``threads`` threads at once, and local paths
    too when the first chunk shows that probing mostly waits (wall time well above CPU time).
    """
    import functools
    import time

    each = functools.partial(_probe_each, suspects=frozenset(suspects), time_limit=time_limit)
    if threads > 1 and paths and "://" in paths[0]:
        # URLs: every thread gets a share however few they are (208 URLs were one chunk, probed
        # one request at a time: 5 minutes behind a server answering in 0.3 s)
        chunk = max(1, min(chunk, -(-len(paths) // threads)))
    parts = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    results: list = []
    if parts and not any("://" in p for p in parts[0]):
        t0, c0 = time.perf_counter(), time.thread_time()
        results += each(parts[0])
        waiting = (time.perf_counter() - t0) - (time.thread_time() - c0)
        parts = parts[1:]
        if waiting < 0.5 * (time.perf_counter() - t0) or waiting < 100e-6 * len(results):
            threads = 1  # CPU-bound (local disk, page cache): one thread is fastest
    if threads > 1 and len(parts) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(threads, len(parts)), thread_name_prefix="probe") as pool:
            results += [r for part in pool.map(each, parts) for r in part]
    else:
        results += [r for part in parts for r in each(part)]
    files = [r for r in results if isinstance(r, PlannedFile)]
    failures = [r for r in results if not isinstance(r, PlannedFile)]
    return files, failures


def probe_on_cluster(client, paths: list[str], *, per_task: int = 1000) -> tuple[list[PlannedFile], list[dict]]:
    """:func:`probe_all` on the cluster's workers, ``per_task`` paths a task: ``(files, failures)``
    in the order of ``paths``, as :func:`probe_all` gives them.

    For a corpus on an object store each probe is a round trip (tens of milliseconds): the
    coordinator alone keeps a few requests in flight, every worker keeps as many again (probe
    tasks use :func:`probe_all`'s threads for URLs), so the probing of millions of headers
    spreads over the cluster instead of holding up the plan.
    """
    import os

    token = os.urandom(4).hex()
    chunks = [paths[i:i + per_task] for i in range(0, len(paths), per_task)]
    futures = client.map(probe_all, chunks, pure=False, retries=2,
                         key=[f"probe-{token}-{i}" for i in range(len(chunks))])
    files: list[PlannedFile] = []
    failures: list[dict] = []
    for found, failed in client.gather(futures):
        files += found
        failures += failed
    return files, failures


# ---------------------------------------------------------------- batches


def _round_up(n: int, chunk: int) -> int:
    return -(-n // chunk) * chunk


def _fill(short: list[PlannedFile], target: int, chunk: int) -> list[list[PlannedFile]]:
    """Consecutive runs of the length-sorted ``short`` files: each reaches ``target`` frames,
    then takes files while they fit its region's last chunk boundary."""
    groups, current, used = [], [], 0
    limit = None  # once the target is reached: the chunk boundary the batch may still fill
    for f in short:
        if limit is not None and used + f.n_frames > limit:
            groups.append(current)
            current, used, limit = [], 0, None
        current.append(f)
        used += f.n_frames
        if limit is None and used >= target:
            limit = _round_up(used, chunk)
    if current:
        groups.append(current)
    return groups


def _pick_chunk(short: list[PlannedFile], long_files: list[PlannedFile], target: int) -> int:
    """The longest chunk, from :func:`auto_chunk_frames` down to 2048, whose regions pad at
    most :data:`MAX_PADDING` of the frames (2048 when none does).

    The first candidate is that of the short files' batch target or of the longest long file,
    whichever is longer: a long file is written in blocks of whole chunks, and 8192-frame chunks
    halve its write time against 2048 (a 2-hour file: 1.6 -> 0.8 s).
    """
    chunk = auto_chunk_frames(max([target, *(f.n_frames for f in long_files)]))
    total = sum(f.n_frames for f in short) + sum(f.n_frames for f in long_files)
    while chunk > DEFAULT_CHUNK_FRAMES:
        padded = sum(_round_up(sum(f.n_frames for f in g), chunk) for g in _fill(short, target, chunk))
        padded += sum(_round_up(f.n_frames, chunk) for f in long_files)
        if padded - total <= MAX_PADDING * total:
            break
        chunk //= 2
    return chunk


# encodings whose seeks land on the very samples a pass from the start gives (each tested with
# libsndfile 1.2 in the containers that carry it: tests/test_extract_blocks.py). Not here: MP3
# and Ogg Vorbis (mpg123 and libsndfile's Vorbis seek land within 1e-5 of the samples, which
# features at the edge of digital silence, such as the zero-crossing rate, amplify), GSM 6.10,
# G.721/G.723 and NMS ADPCM ("unseekable file type"), DWVW and the rest (untested).
_EXACT_SEEK_SUBTYPES = frozenset({
    "PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW",
    "IMA_ADPCM", "MS_ADPCM", "OPUS", "ALAC_16", "ALAC_20", "ALAC_24", "ALAC_32",
})


# the most disk that the copies of split files that cannot seek exactly may take at once in a
# run folder (make_batches: float32 at the store's rate; 8 GiB is 37 hours at 16 kHz)
MAX_SCRATCH_BYTES = 8 << 30


def splits_exactly(f: PlannedFile, sr: int) -> bool:
    """Whether parts of ``f`` computed by separate tasks give the very samples of one pass.

    Parts seek to their first sample, which is exact for the encodings in
    :data:`_EXACT_SEEK_SUBTYPES`, but not after resampling: soxr started inside a file gives
    samples within 2e-7 of a pass from the start, not the same ones, and the zero-crossing rate
    and the centroid of frames at the edge of digital silence turn on such differences. So only
    files already at the store's rate, in those encodings, are split.
    """
    return f.sample_rate == sr and f.subtype in _EXACT_SEEK_SUBTYPES and not _decoded_by_ffmpeg(f)


def _decoded_by_ffmpeg(f: PlannedFile) -> bool:
    """Opus in WebM is "OPUS" as Opus in Ogg is, but FFmpeg's reader seeks by decoding from the
    start: parts or ranges of it would each decode the file again."""
    from featurelib._avfile import FFMPEG_ONLY_FORMATS

    return f.format in FFMPEG_ONLY_FORMATS or f.subtype == "ALAC"


# codecs whose decoding costs more than soxr's resampling (FLAC: about ten times), among the
# encodings that seek to the very samples: a split file in one of them is decoded in ranges on
# several workers before the one resampling pass (jobs.extract.decode_native_range)
_COSTLY_EXACT_CODECS = frozenset({"FLAC"})
_COSTLY_EXACT_SUBTYPES = frozenset({"OPUS", "ALAC_16", "ALAC_20", "ALAC_24", "ALAC_32"})


def decodes_in_ranges(f: PlannedFile) -> bool:
    """Whether a long file whose parts read one resampling pass (not :func:`splits_exactly`)
    is worth decoding in ranges on several workers first: a local file whose codec costs more
    than the resampling and seeks exactly (FLAC, Opus, ALAC)."""
    return ("://" not in f.path and f.subtype in _EXACT_SEEK_SUBTYPES and not _decoded_by_ffmpeg(f)
            and (f.format in _COSTLY_EXACT_CODECS or f.subtype in _COSTLY_EXACT_SUBTYPES))


def native_ranges(f: PlannedFile, count: int) -> list[tuple[int, int]]:
    """``count`` consecutive native frame ranges that cover ``f``, as even as whole frames allow."""
    edges = [f.frames * i // count for i in range(count + 1)]
    return [(edges[i], edges[i + 1]) for i in range(count)]


# the most a file is upsampled to the store's rate: a rate under sr / 64 (250 Hz for a 16 kHz
# store) is no sound recording but a damaged header (whose frames, resampled, would make a job
# of years of audio) or a slow sensor signal, which belongs in a store of its own rate
MAX_UPSAMPLING = 64
# the highest native rate taken for sound: above every converter made (768 kHz) and every
# ultrasound recorder; a header announcing more (2**31 - 1 Hz, say) is damaged
MAX_NATIVE_RATE = 10_000_000


def implausible_rate(f: PlannedFile, sr: int) -> dict | None:
    """The probe failure of a file whose sample rate is too low to resample to ``sr``, or too
    high for any sound recording, or None."""
    if f.sample_rate > MAX_NATIVE_RATE:
        return {"path": f.path, "stage": "probe", "error_type": "ImplausibleSampleRate",
                "message": f"a sample rate of {f.sample_rate} Hz is too high for sound (over "
                           f"{MAX_NATIVE_RATE:,} Hz; a damaged header?)"}
    if f.sample_rate * MAX_UPSAMPLING >= sr:
        return None
    return {"path": f.path, "stage": "probe", "error_type": "ImplausibleSampleRate",
            "message": f"a sample rate of {f.sample_rate} Hz is too low for sound (the store's "
                       f"{sr} Hz would upsample it {sr / f.sample_rate:.0f}x; a damaged header?): "
                       "a slow signal belongs in a store of its own rate (audio.sr)"}


def make_batches(files: list[PlannedFile], *, sr: int, hop_length: int, batch_seconds: float,
                 min_batches: int = 1, block_seconds: float = 120.0,
                 chunk_frames: int | None = DEFAULT_CHUNK_FRAMES, failures: list[dict] | None = None,
                 first_batch_id: int = 0, first_frame: int = 0,
                 part_seconds: float | None = None, scratch_parts: bool = False) -> Plan:
    """Group probed files into batches with chunk-aligned, disjoint regions (deterministic).

    ``chunk_frames=None`` picks it from the batch size and the padding it would cost
    (:func:`auto_chunk_frames`, :data:`MAX_PADDING`); the plan's
    ``chunk_frames`` says which. ``first_batch_id`` and ``first_frame`` (a chunk boundary) place
    the batches after those of an earlier plan, when new inputs are appended to a store.
    A long file of more than ``part_seconds`` of audio (the job passes ``batch_seconds``) is
    split into parts of whole blocks, each a task of its own (``Batch.part_frames``), where the
    parts give the samples of one pass: files that seek exactly (:func:`splits_exactly`), and
    with ``scratch_parts`` (a run folder on a local disk) the other long files that hold more
    than the corpus's share per task (its frames over ``min_batches``): their samples are
    decoded and resampled by one task into the run folder, for their parts to read. That pass
    is serial and the copy costs a write and reads (2 hours at 44.1 kHz on 2 cores: 7.2 s in one
    task, 7.5 s split; more cores gain), so a corpus of many long files, which keeps the
    workers busy anyway, leaves them whole; and the copies, the longest files first, take at
    most :data:`MAX_SCRATCH_BYTES`.
    """
    rejected = [r for r in (implausible_rate(f, sr) for f in files) if r is not None]
    if rejected:
        gone = {r["path"] for r in rejected}
        files = [f for f in files if f.path not in gone]
        failures = [*(failures or []), *rejected]
    for f in files:
        f.n_samples = n_resampled(f.frames, f.sample_rate, sr)
        f.n_frames = frame_count(f.n_samples, hop_length)
    long_files = sorted((f for f in files if f.duration_s > block_seconds), key=lambda f: f.path)
    short = sorted((f for f in files if f.duration_s <= block_seconds),
                   key=lambda f: (f.n_frames, f.path))
    frames_per_second = sr / hop_length
    total_short = sum(f.n_frames for f in short)
    target = min(batch_seconds * frames_per_second, total_short / max(1, min_batches))
    target = max(1, int(target))
    if chunk_frames is None:
        chunk_frames = _pick_chunk(short, long_files, target)
    block_frames = max(chunk_frames, int(round(block_seconds * frames_per_second / chunk_frames)) * chunk_frames)
    part_frames = 0
    if part_seconds is not None:
        part_frames = max(1, int(part_seconds * frames_per_second / block_frames)) * block_frames

    share = sum(f.n_frames for f in files) / max(1, min_batches)  # a task's share of the corpus
    scratch, budget = set(), MAX_SCRATCH_BYTES  # the longest first, while their copies fit
    for f in sorted(long_files, key=lambda f: (-f.n_samples, f.path)):
        if scratch_parts and part_frames and f.n_frames > max(part_frames, share) \
                and not splits_exactly(f, sr) and 4 * f.n_samples <= budget:
            scratch.add(f.path)
            budget -= 4 * f.n_samples
    groups: list[tuple[str, list[PlannedFile]]] = [("long", [f]) for f in long_files]
    groups += [("files", members) for members in _fill(short, target, chunk_frames)]

    batches, start = [], first_frame
    for batch_id, (kind, members) in enumerate(groups, start=first_batch_id):
        cursor = start
        for f in members:
            f.frame_start, f.frame_stop, f.batch_id = cursor, cursor + f.n_frames, batch_id
            cursor += f.n_frames
        stop = start + _round_up(cursor - start, chunk_frames)
        split = kind == "long" and part_frames and members[0].n_frames > part_frames \
            and (splits_exactly(members[0], sr) or members[0].path in scratch)
        batches.append(Batch(batch_id=batch_id, kind=kind, region_start=start, region_stop=stop,
                             block_frames=block_frames if kind == "long" else 0, files=members,
                             part_frames=part_frames if split else 0))
        start = stop
    return Plan(batches=batches, failures=list(failures or []), total_frames=start,
                chunk_frames=chunk_frames)


# ---------------------------------------------------------------- persistence


_PLANNED_FIELDS = ("path", "file_id", "size_bytes", "format", "subtype", "sample_rate", "channels",
                   "frames", "duration_s", "n_samples", "n_frames", "frame_start", "frame_stop",
                   "batch_id", "mtime_ns")


def plan_to_tables(plan: Plan):
    """(files table, batches list) for storing a plan: pyarrow Table + JSON-able list."""
    from operator import attrgetter

    import pyarrow as pa

    files = plan.files
    schema = _files_schema()
    names, types = schema.names, schema.types  # Field.name: a new str per call
    # column by column (30x faster than a dict per file), from buffers (see _arrow_column); the
    # fields of every file in one pass, and no field of a planned file is ever None
    values = list(zip(*map(attrgetter(*names), files))) if files else [()] * len(names)
    columns = [_arrow_column(v, t, nulls=False) for v, t in zip(values, types)]
    return pa.Table.from_arrays(columns, schema=schema), plan_batches(plan)


def _arrow_column(values, type_, *, nulls: bool = True):
    """An Arrow array of ``values`` built from NumPy buffers.

    ``pa.array`` imports pandas the first time it converts Python values (0.3 s), which the
    coordinator and every worker would pay while the batches run; buffers need no conversion.
    ``None`` values become nulls (``nulls=False`` says there are none: no scan for them).
    Strings that are not valid UTF-8 (file names in another encoding, which discovery turns
    into failures) are written with their bytes as ``\\xNN``.
    """
    import numpy as np
    import pyarrow as pa

    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":  # no nulls: no scan
        dtype = {pa.int64(): np.int64, pa.float64(): np.float64}[type_]
        array = np.ascontiguousarray(values, dtype=dtype)
        return pa.Array.from_buffers(type_, len(array), [None, pa.py_buffer(array)])
    valid = None
    if nulls and any(v is None for v in values):  # a validity bitmap, placeholders in the data
        mask = np.array([v is not None for v in values])
        valid = pa.py_buffer(np.packbits(mask, bitorder="little"))
        fill = "" if pa.types.is_string(type_) else 0
        values = [fill if v is None else v for v in values]
    if pa.types.is_string(type_):
        try:
            data = [v.encode("utf-8") for v in values]
        except UnicodeEncodeError:  # a name that is not UTF-8 (surrogates): its bytes as \xNN
            from jobs.discover import printable_path

            data = [printable_path(v).encode("utf-8") for v in values]
        offsets = np.zeros(len(data) + 1, np.int64)
        np.cumsum([len(b) for b in data], out=offsets[1:])
        text = pa.py_buffer(b"".join(data))
        if type_ == pa.string() and offsets[-1] < 2**31:  # string's own 32-bit offsets: no cast
            # (a cast imports pyarrow.compute, 0.06 s, in the coordinator and every worker)
            return pa.Array.from_buffers(type_, len(data), [valid, pa.py_buffer(offsets.astype(np.int32)), text])
        large = pa.Array.from_buffers(pa.large_string(), len(data), [valid, pa.py_buffer(offsets), text])
        return large.cast(type_)
    dtype = {pa.int64(): np.int64, pa.float64(): np.float64}[type_]
    array = np.ascontiguousarray(np.asarray(values, dtype=dtype))
    return pa.Array.from_buffers(type_, len(array), [valid, pa.py_buffer(array)])


def arrow_table(columns: dict, schema):
    """A pyarrow Table of ``schema`` from ``columns`` (name -> list or 1-d NumPy array), built
    from buffers (:func:`_arrow_column`): no pandas import in the coordinator or the workers."""
    import pyarrow as pa

    return pa.Table.from_arrays([_arrow_column(columns[f.name], f.type) for f in schema], schema=schema)


def arrow_rows(rows: list[dict], schema):
    """:func:`arrow_table` of a list of row dicts (missing keys are nulls)."""
    return arrow_table({f.name: [r.get(f.name) for r in rows] for f in schema}, schema)


_BATCH_FIELDS = ("batch_id", "kind", "region_start", "region_stop", "block_frames", "part_frames")


def plan_batches(plan: Plan) -> list[dict]:
    """The batches of a plan as a JSON-able list (without their files)."""
    return [{name: getattr(b, name) for name in _BATCH_FIELDS} for b in plan.batches]


def _files_schema():
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()), ("file_id", pa.string()), ("size_bytes", pa.int64()),
        ("format", pa.string()), ("subtype", pa.string()), ("sample_rate", pa.int64()),
        ("channels", pa.int64()), ("frames", pa.int64()), ("duration_s", pa.float64()),
        ("n_samples", pa.int64()), ("n_frames", pa.int64()), ("frame_start", pa.int64()),
        ("frame_stop", pa.int64()), ("batch_id", pa.int64()), ("mtime_ns", pa.int64()),
    ])


def plan_from_tables(table, batches: list[dict], failures: list[dict], total_frames: int,
                     chunk_frames: int) -> Plan:
    """Rebuild a :class:`Plan` stored by :func:`plan_to_tables`."""
    by_batch: dict[int, list[PlannedFile]] = {b["batch_id"]: [] for b in batches}
    if "mtime_ns" not in table.column_names:  # a plan stored before the field: unknown
        import pyarrow as pa

        table = table.append_column("mtime_ns", pa.array([0] * table.num_rows, pa.int64()))
    columns = table.select(list(_PLANNED_FIELDS)).to_pydict()
    for values in zip(*columns.values()):
        planned = PlannedFile(*values)
        if planned.batch_id in by_batch:  # else: an extension whose plan file was never written
            by_batch[planned.batch_id].append(planned)
    out = [Batch(files=by_batch[b["batch_id"]], **b) for b in batches]
    return Plan(batches=out, failures=failures, total_frames=total_frames, chunk_frames=chunk_frames)

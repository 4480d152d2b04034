"""Discover: turn the configured inputs into a sorted list of audio files.

An input is one of
- a folder: every file below it (recursively, symlinks followed, each real folder searched once
  so that loops end and a linked folder is not listed twice) whose extension is an audio format
  libsndfile reads, or FFmpeg through PyAV (``.m4a``, ``.aac``, ``.wma``, ``.webm``, ...), in any
  letter case (audio neither reads, such as ``.ra``, and
  a symbolic link with an audio name whose target is gone are reported as ``discover`` failures
  with what is wrong; macOS AppleDouble companions, ``._NAME.wav``, are passed over and counted
  in ``Discovery.skipped``);
- a glob (``data/**/*.wav``): its matches, folders among them searched as above;
- a text file listing inputs (``.txt``, ``.lst``, ``.list``; one per line, ``#`` comments, relative
  lines resolve against the list file's folder);
- an fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``file:///...``): a prefix is searched like
  a folder, a single object is an input;
- a file named explicitly: always an input, whatever its extension;
- or a list of these.

A top-level input that does not exist is a usage error (a typo in a config should stop the job);
an entry of a list file that does not exist becomes a ``discover`` failure, so that every path the
user named is accounted for.
"""

from __future__ import annotations

import glob
import os
import posixpath
from dataclasses import dataclass, field

from jobs.errors import UsageError
from jobs.redact import redact

__all__ = [
    "Discovery", "discover", "folder_entries", "audio_extensions", "printable_path", "shown_path", "LIST_EXTENSIONS",
           "is_apple_double", "skipped_note"]

LIST_EXTENSIONS = (".txt", ".lst", ".list")

# Audio that libsndfile cannot decode. Found in a folder where FFmpeg (PyAV) does not read it
# either, such a file is reported as a discover failure (rather than passed over in silence), so
# that a corpus of .ra files does not turn into an empty job and a mixed one shows what it lost.
UNSUPPORTED_AUDIO_EXTENSIONS = frozenset({
    ".m4a", ".m4b", ".mp4", ".aac", ".alac", ".wma", ".asf", ".ape", ".wv", ".amr", ".3gp",
    ".webm", ".weba", ".mka", ".ac3", ".dts", ".ra", ".aa", ".tta", ".dsf", ".spx",
})

# Used only if featurelib.io is not importable (it owns the authoritative list).
_FALLBACK_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".au",
    ".snd", ".w64", ".caf", ".rf64", ".sd2", ".voc", ".paf", ".svx", ".nist", ".sph", ".ircam",
    ".sf", ".mat", ".pvf", ".xi", ".htk", ".mpc", ".wve", ".avr", ".gsm", ".vox", ".vox6", ".vox8",
})


def audio_extensions() -> frozenset[str]:
    """Lower-case extensions (with the dot) that count as audio in a folder."""
    try:
        from featurelib.io import AUDIO_EXTENSIONS
    except ImportError:
        return _FALLBACK_EXTENSIONS
    return frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in AUDIO_EXTENSIONS)


def _list_text(raw: bytes) -> str:
    """A list file's text: UTF-8, with or without the byte-order mark Windows editors write, or
    UTF-16 where a byte-order mark says so (PowerShell's ``>`` writes that)."""
    import codecs

    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        text = raw.decode("utf-32")
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = raw.decode("utf-16")
    else:
        text = raw.decode("utf-8-sig")
    if "\x00" in text:  # UTF-16 or UTF-32 without a mark decodes as UTF-8 with NULs: no path has one
        raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL characters")
    return text


@dataclass
class Discovery:
    """What discovery found: audio inputs, and named paths that could not be read."""

    paths: list[str] = field(default_factory=list)  # absolute paths or URLs, sorted, unique
    failures: list[dict] = field(default_factory=list)  # {path, stage, error_type, message}
    # macOS metadata files under audio names that a folder search passed over (not inputs)
    skipped: list[str] = field(default_factory=list)


def is_apple_double(path: str, name: str | None = None, opener=open) -> bool:
    """Whether ``path`` is a macOS AppleDouble file: the ``._NAME`` companion that macOS writes
    beside every file it copies to a drive or zip without its own metadata (``__MACOSX/`` in
    zips). It holds a few kilobytes of Finder data, never audio, yet carries the audio file's
    extension. Only ``._`` names are opened (their first four bytes)."""
    name = os.path.basename(path) if name is None else name
    if not name.startswith("._"):
        return False
    from featurelib.io import APPLE_DOUBLE_MAGIC

    try:
        with opener(path, "rb") as handle:
            return handle.read(4) == APPLE_DOUBLE_MAGIC
    except Exception:  # noqa: BLE001 - unreadable: not skipped; the probe says what is wrong
        return False


def skipped_note(skipped: list[str]) -> str:
    """One line on the AppleDouble files a folder search passed over."""
    example = printable_path(skipped[0])
    return (f"passed over {len(skipped)} macOS metadata file{'s' * (len(skipped) != 1)} "
            f"('._' AppleDouble companions under audio names, not audio), e.g. {example}")


def _is_url(text: str) -> bool:
    return "://" in text and not text.startswith("file://")


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def unsupported_reason(path: str, extensions=None) -> str | None:
    """Why a file named as audio that nothing here decodes (``.spx``, or ``.m4a`` without PyAV)
    is left out, with what to do; None for any other name. ``extensions``: those read here
    (default :func:`audio_extensions`)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in UNSUPPORTED_AUDIO_EXTENSIONS or ext in (extensions or audio_extensions()):
        return None
    from featurelib._avfile import AV_EXTENSIONS

    if ext.lstrip(".") in AV_EXTENSIONS:  # FFmpeg would read it, but PyAV is missing
        return (f"{ext} audio is decoded with FFmpeg through PyAV, which is not installed "
                f"(pip install av), or convert it to FLAC or WAV first (e.g. ffmpeg -i IN OUT.flac)")
    return (f"{ext} audio is not a format libsndfile or FFmpeg decodes here; convert it "
            f"to FLAC or WAV first (e.g. ffmpeg -i IN OUT.flac)")


class _Walker:
    def __init__(self, extensions):
        self.extensions = extensions
        self.found: dict[str, None] = {}
        self.failures: dict[str, dict] = {}
        self.skipped: list[str] = []

    def _fail(self, path, exc: BaseException | str, error_type=None):
        if path in self.found or path in self.failures:
            return
        self.failures[path] = {
            "path": path, "stage": "discover",
            "error_type": error_type or type(exc).__name__,
            "message": str(exc) if not isinstance(exc, OSError) else (exc.strerror or str(exc)),
        }

    def _is_audio(self, name: str) -> bool:
        return os.path.splitext(name)[1].lower() in self.extensions

    def unsupported(self, path: str) -> bool:
        """Record ``path`` as a failure if its extension is audio that libsndfile cannot read."""
        reason = unsupported_reason(path, self.extensions)
        if reason is None:
            return False
        self._fail(path, reason, "UnsupportedFormat")
        return True

    def add_file(self, path: str):
        self.found.setdefault(path, None)
        self.failures.pop(path, None)

    def walk_folder(self, root: str):
        """Depth first, like ``os.walk(followlinks=True)``, with one ``scandir`` per folder: a
        regular file's type comes from the listing, so only links cost a ``stat``."""
        seen_dirs = set()
        stack = [root]
        while stack:
            dirpath = stack.pop()
            real = os.path.realpath(dirpath)
            if real in seen_dirs:  # a symlink loop or a second link to a visited folder
                continue
            seen_dirs.add(real)
            try:
                with os.scandir(dirpath) as listing:
                    entries = list(listing)
            except OSError:  # unreadable folder: skipped, as os.walk does
                continue
            dirs = []
            for entry in sorted(entries, key=lambda e: e.name):
                try:
                    is_dir = entry.is_dir()  # follows links
                except OSError:
                    is_dir = False
                if is_dir:
                    dirs.append(entry)
                elif self._is_audio(entry.name):
                    try:
                        is_file = entry.is_file()  # follows links: skips dangling ones
                    except OSError:
                        is_file = False
                    if is_file and is_apple_double(entry.path, entry.name):
                        self.skipped.append(entry.path)
                    elif is_file:
                        self.add_file(entry.path)
                    else:
                        # an audio name that is no file (a link that leads nowhere or back to
                        # itself, a named pipe, a socket): reported, not passed over, so that
                        # every audio file the folder names is accounted for
                        from featurelib.io import unreadable_path

                        kind, reason = unreadable_path(entry.path) or ("NotARegularFile",
                                                                       "not a regular file")
                        self._fail(entry.path, reason, kind)
                elif os.path.splitext(entry.name)[1].lower() in UNSUPPORTED_AUDIO_EXTENSIONS:
                    try:
                        if entry.is_file():
                            self.unsupported(entry.path)
                    except OSError:
                        pass
            # real folders before links at each level, so a folder reached both ways is listed
            # under its own path
            dirs.sort(key=lambda e: (e.is_symlink(), e.name))
            stack.extend(e.path for e in reversed(dirs))

    def add_local(self, path: str, *, top_level: bool, depth: int = 0):
        path = os.path.abspath(os.path.expanduser(path))
        if os.path.isdir(path):
            self.walk_folder(path)
        elif os.path.isfile(path):
            if os.path.splitext(path)[1].lower() in LIST_EXTENSIONS:
                self.add_list(path, depth=depth)
            else:
                self.add_file(path)
        elif os.path.lexists(path):  # named, but a FIFO, a device, a broken or looping link
            from featurelib.io import unreadable_path

            kind, reason = unreadable_path(path) or ("NotARegularFile", "not a regular file")
            self._fail(path, reason, kind)
        elif top_level:
            raise UsageError(f"input: no such file or folder: {path}")
        else:
            self._fail(path, "no such file or folder", "FileNotFoundError")

    def add_list(self, list_path: str, depth: int = 0):
        if depth > 8:
            raise UsageError(f"input: list files nest too deeply at {list_path}")
        base = os.path.dirname(list_path)
        try:
            with open(list_path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            self._fail(list_path, exc)
            return
        try:
            lines = _list_text(raw).splitlines()
        except UnicodeDecodeError:
            self._fail(list_path, "a list of inputs that is not UTF-8 (nor UTF-16 with a byte-order "
                                  "mark) text: none of its entries were read; save it as UTF-8",
                       "UnreadableList")
            return
        for line in lines:
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            self.add(entry, base=base, top_level=False, depth=depth + 1)

    def add_url(self, url: str, *, top_level: bool):
        import fsspec

        try:
            fs, root = fsspec.core.url_to_fs(url)
            protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            # a chained URL (zip://folder/::file:///a.zip) lists the inner file system: each
            # member's URL keeps the chain that reaches it
            chain = "::" + url.split("::", 1)[1] if "::" in url else ""

            def member_url(name: str) -> str:
                return fs.unstrip_protocol(name) + chain

            if _is_glob(root) and not fs.exists(root):  # a pattern: its matches are named inputs
                matched = [name for name in sorted(fs.glob(root)) if not fs.isdir(name)]
                if not matched and top_level:
                    raise UsageError(f"input: the pattern {redact(url)} matches nothing")
                if not matched:
                    self._fail(url, "the pattern matches nothing", "FileNotFoundError")
                for name in matched:
                    self.add_file(member_url(name))
            elif fs.isdir(root):
                listed = sorted(fs.find(root))
                for name in listed:
                    if self._is_audio(name):
                        if is_apple_double(name, posixpath.basename(name), opener=fs.open):
                            self.skipped.append(member_url(name))
                        else:
                            self.add_file(member_url(name))
                    else:
                        self.unsupported(member_url(name))
            elif fs.exists(root):
                self.add_file(url if url.startswith(protocol) else fs.unstrip_protocol(root))
            elif top_level:
                raise UsageError(f"input: nothing found at {redact(url)}")
            else:
                self._fail(url, "no such object", "FileNotFoundError")
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend error is reported, not raised
            if top_level:
                raise UsageError(redact(f"input: cannot list {url}: {type(exc).__name__}: {exc}")) from None
            self._fail(url, exc)

    def add(self, entry: str, *, base: str | None = None, top_level: bool, depth: int = 0):
        local = _local_entry(entry)  # (a file URI's escapes undone: Path.as_uri())
        if local is None:
            self.add_url(entry, top_level=top_level)
            return
        entry = local
        if base is not None and not os.path.isabs(entry):
            entry = os.path.join(base, entry)
        if _is_glob(entry) and not os.path.exists(entry):
            matches = sorted(glob.glob(entry, recursive=True))
            if not matches:
                if top_level:
                    raise UsageError(f"input: the pattern {entry} matches nothing")
                self._fail(entry, "the pattern matches nothing", "FileNotFoundError")
            for match in matches:
                self.add_local(match, top_level=False, depth=depth)
            return
        self.add_local(entry, top_level=top_level, depth=depth)


def folder_entries(root: str) -> tuple[list[str], list[str]]:
    """What a job accounts for in the folder ``root`` (searched as :func:`discover` does): every
    audio file and every audio name that cannot be read (a link that leads nowhere, a named pipe,
    a format libsndfile does not decode), sorted, with the paths as ``root`` gives them; and the
    macOS AppleDouble companions passed over. ``audiofeat inspect`` of a folder shows the same."""
    walker = _Walker(audio_extensions())
    walker.walk_folder(root)
    return sorted({**walker.found, **walker.failures}), walker.skipped


def _local_entry(entry: str) -> str | None:
    """A top-level input as a local path (a file URI's escapes undone, ``~`` expanded), or None
    for a URL."""
    if entry.startswith("file://"):
        entry = entry[len("file://"):]
        if "%" in entry and not os.path.lexists(entry):
            from urllib.parse import unquote

            entry = unquote(entry)
    if _is_url(entry):
        return None
    return os.path.expanduser(entry)


def check_inputs(inputs: str | list[str] | None) -> None:
    """The usage error :func:`discover` would give for a local input that does not exist or a
    pattern that matches nothing, told at once (a job checks its inputs before it makes its run
    folder; a URL is listed only when the job discovers its inputs)."""
    if inputs is None or inputs == []:
        raise UsageError("input: no input given (set `input:` in the config or pass --input)")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    for raw in inputs:
        entry = _local_entry(os.fspath(raw))
        if entry is None or os.path.lexists(entry):
            continue
        if _is_glob(entry):
            if next(glob.iglob(entry, recursive=True), None) is None:
                raise UsageError(f"input: the pattern {entry} matches nothing")
        else:
            raise UsageError(f"input: no such file or folder: {os.path.abspath(entry)}")


def discover(inputs: str | list[str] | None) -> Discovery:
    """Every audio input under ``inputs``, sorted and unique, plus the named paths that failed."""
    if inputs is None or inputs == []:
        raise UsageError("input: no input given (set `input:` in the config or pass --input)")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    walker = _Walker(audio_extensions())
    for entry in inputs:
        walker.add(os.fspath(entry), top_level=True)
    failures = {printable_path(p): {**f, "path": printable_path(f["path"])}
                for p, f in walker.failures.items()}
    paths = []
    for path in walker.found:
        shown = printable_path(path)
        if shown == path:
            paths.append(path)
        else:  # the tables are UTF-8 (Parquet strings): such a name cannot be stored, nor re-read
            failures[shown] = {
                "path": shown, "stage": "discover", "error_type": "UndecodableFileName",
                "message": "the file name is not valid UTF-8 (the bytes shown as \\xNN); rename it "
                           "to UTF-8 to extract it"}
    skipped = sorted(set(walker.skipped) - set(walker.found))
    return Discovery(paths=sorted(paths), failures=[failures[p] for p in sorted(failures)],
                     skipped=skipped)


# control characters in a file name (a newline, a tab) would break a line of output
_CONTROL_CHARACTERS = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {10: "\\n", 9: "\\t"}


def shown_path(path) -> str:
    """A path for a person: one line of valid UTF-8 (:func:`printable_path`, and control
    characters escaped)."""
    return printable_path(str(path)).translate(_CONTROL_CHARACTERS)


def printable_path(path: str) -> str:
    """``path`` as valid UTF-8 text: bytes of a name that is not UTF-8 (which Python keeps as
    surrogates) are written ``\\xNN``."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")

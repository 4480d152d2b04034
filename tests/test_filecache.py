"""featurelib._filecache: facts about a local file kept while it is unchanged, for a bounded few."""

from __future__ import annotations

import io
import os

from featurelib._filecache import FileFacts, per_file_state


def test_file_facts_are_kept_for_the_last_files_only(tmp_path):
    """A worker that reads millions of files keeps the facts of the last few, not of each."""
    facts = FileFacts(maxsize=3)
    paths = []
    for i in range(10):
        path = tmp_path / f"{i}.m4a"
        path.write_bytes(b"x" * (i + 1))
        paths.append(path)
        facts.put(facts.key(path), i)
    assert len(facts) == 3
    assert [facts.get(facts.key(p)) for p in paths[-3:]] == [7, 8, 9]
    assert facts.get(facts.key(paths[0])) is None


def test_a_rewritten_file_is_counted_again(tmp_path):
    path = tmp_path / "a.m4a"
    path.write_bytes(b"short")
    facts = FileFacts()
    facts.put(facts.key(path), 5)
    path.write_bytes(b"longer now")
    assert facts.get(facts.key(path)) is None


def test_what_is_no_local_file_has_no_key(tmp_path):
    facts = FileFacts()
    for source in (io.BytesIO(b"abc"), tmp_path / "gone.m4a"):
        assert facts.key(source) is None
        facts.put(facts.key(source), 1)
        assert facts.get(facts.key(source)) is None
    assert len(facts) == 0


def test_per_file_state_reads_a_file_once_while_it_is_unchanged(tmp_path):
    calls = []

    @per_file_state(maxsize=2)
    def size(path):
        calls.append(path)
        return os.path.getsize(path)

    path = tmp_path / "a.mp3"
    path.write_bytes(b"12345")
    assert size(path) == size(path) == 5 and len(calls) == 1
    path.write_bytes(b"1234567")
    assert size(path) == 7 and len(calls) == 2
    for i in range(3):  # two others push it out
        (tmp_path / f"{i}.mp3").write_bytes(b"x")
        size(tmp_path / f"{i}.mp3")
    size(path)
    assert len(calls) == 6

"""jobs.outdir: run folders and the local copies of what lives at a URL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_temporary_folder_is_removed_at_exit_of_its_own_process_only(tmp_path):
    """A model folder copied from a URL is removed when the process that made it exits (the
    copies of every scoring worker piled up in /tmp before); a forked child leaves it."""
    script = f"""
import os, sys
sys.path.insert(0, {os.getcwd()!r})
from jobs.outdir import temporary_folder
folder = temporary_folder("audiofeat-test-")
(folder / "model.onnx").write_bytes(b"x")
print(folder, flush=True)
pid = os.fork()
if pid == 0:  # a child ends the way multiprocessing children do
    from multiprocessing import util
    util._exit_function()
    os._exit(0)
os.waitpid(pid, 0)
assert (folder / "model.onnx").exists(), "the child removed its parent's folder"
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    folder = result.stdout.strip()
    assert folder.startswith(str(tmp_path))
    assert not os.path.exists(folder)


def test_an_output_store_that_cannot_be_reached_is_named_in_one_line():
    """A wrong key or a missing bucket on `out:` came as a 57-line traceback from the plan, with
    exit status 1; the run lock asks the store first and says which `out` and why."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    from jobs.errors import UsageError
    from jobs.outdir import run_lock

    class Denied(MemoryFileSystem):
        protocol = "denied"

        def exists(self, path, **kwargs):
            raise PermissionError("Forbidden")

    fsspec.register_implementation("denied", Denied, clobber=True)
    with pytest.raises(UsageError, match=r"^out: denied://bucket/run cannot be reached \(PermissionError: Forbidden\)"):
        run_lock("denied://bucket/run", "extract")
    run_lock("memory://bucket/fine", "extract").close()  # a store that answers: no word

"""jobs.outdir: run folders and the local copies of what lives at a URL."""

from __future__ import annotations

import os
import subprocess
import sys


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

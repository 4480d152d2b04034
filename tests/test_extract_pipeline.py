"""audiofeat run: every stage the config names, in order, as the commands a user would type."""

from __future__ import annotations

import yaml
from test_extract_support import copy_samples, run_cli


def _config(tmp_path, **extra):
    copy_samples(tmp_path / "corpus", 60)
    cfg = {
        "input": "corpus", "out": "out",  # relative: resolved against the config's folder
        "audio": {"sr": 8000}, "frames": {"n_fft": 256, "hop_length": 80},
        "features": {"mfcc": {"n_mfcc": 13, "n_mels": 32}, "rms": {}},
        "compute": {"workers": 2},
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_extract_train_score_in_order(tmp_path):
    cfg = _config(tmp_path, labels={"source": "regex", "pattern": r"^(?P<label>\d)_(?P<speaker>[a-z]+)_"},
                  split={"method": "group", "group": "speaker"}, train={"model": "baseline"}, score={})
    result = run_cli("run", cfg)
    assert result.returncode == 0, result.stderr
    order = [line.split()[-1] for line in result.stderr.splitlines() if line.startswith("run: stage")]
    assert order == ["extract", "train", "score"]
    out = tmp_path / "out"
    for name in ("features.zarr", "files.parquet", "manifest.json", "models", "scores/segments.parquet"):
        assert (out / name).exists(), name
    again = run_cli("run", cfg, "--stages", "extract")
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_run_without_train_sections_is_extract_only(tmp_path):
    cfg = _config(tmp_path)
    result = run_cli("run", cfg, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("run: stage")] == ["run: stage extract"]
    bad = run_cli("run", cfg, "--stages", "extract,deploy")
    assert bad.returncode == 2 and "deploy" in bad.stderr


def test_two_jobs_started_from_two_threads_of_one_process_run_one_after_the_other(tmp_path):
    """A notebook's ThreadPoolExecutor runs run_extract twice at once: the second waits for the
    first (said so) and both finish (two local clusters in one process hung now and then)."""
    import subprocess
    import sys
    import textwrap

    from test_extract_support import REPO, _env, read_tables, write_config

    corpus = tmp_path / "corpus"
    copy_samples(corpus, 8)
    configs = [write_config(tmp_path / f"job{i}.yaml", input=corpus, out=tmp_path / f"out{i}",
                            features={"rms": {}}, compute={"workers": 1}) for i in (1, 2)]
    script = tmp_path / "two_threads.py"
    script.write_text(textwrap.dedent(f"""
        from concurrent.futures import ThreadPoolExecutor
        from jobs.extract import run_extract

        if __name__ == "__main__":
            with ThreadPoolExecutor(2) as pool:
                print("statuses", list(pool.map(run_extract, {[str(c) for c in configs]!r})))
    """))
    result = subprocess.run([sys.executable, str(script)], cwd=REPO, env=_env(), capture_output=True,
                            text=True, timeout=240)
    said = result.stdout + result.stderr
    assert result.returncode == 0 and "statuses [0, 0]" in result.stdout, said
    assert "another audiofeat job runs in this process" in said
    import json

    spans = []
    for i in (1, 2):
        files, failures = read_tables(tmp_path / f"out{i}")
        assert files.num_rows == 8 and failures.num_rows == 0
        manifest = json.loads((tmp_path / f"out{i}" / "manifest.json").read_text())
        spans.append((manifest["started"], manifest["finished"]))
    # each job's start and throughput are its own: the one that waited started when the other ended
    (a0, a1), (b0, b1) = sorted(spans)
    assert b0 >= a1

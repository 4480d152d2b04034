"""``audiofeat run CONFIG.yaml``: every stage the config names, in order.

Stages come from ``--stages`` or the config's ``stages:`` list; without one, ``extract`` runs,
then ``train`` and ``score`` when the config has those sections. Each named stage runs once, in
the pipeline's order (extract, train, score), however it was listed. Each stage is the command of the same name, run on
the same config file (``audiofeat extract``, ``audiofeat train``, ``audiofeat score``), so a run
is exactly the commands a user could type one after another.

Exit status: 2 as soon as a stage reports bad usage or config; otherwise the largest status of
the stages (1 when some inputs failed but the rest went on).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jobs.errors import EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["add_arguments", "main", "stage_argv"]

# options of `run` that are handed on to every stage whose command accepts them
_PASSED_ON = ("--input", "--out", "--scheduler", "--workers", "--overwrite", "--tls-ca",
              "--tls-cert", "--tls-key")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="job config (YAML)")
    parser.add_argument("--stages", metavar="LIST",
                        help="comma-separated stages to run instead of the config's (extract,train,score)")
    parser.add_argument("--input", action="extend", nargs="+", metavar="PATH",
                        help="inputs (several after one --input, or --input repeated)")
    parser.add_argument("--out", metavar="DIR", help="run directory (replaces the config's)")
    parser.add_argument("--scheduler", metavar="ADDR", help="address of a running Dask scheduler")
    parser.add_argument("--workers", type=int, metavar="N", help="local worker processes")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a store made with a different feature config "
                             "(changed inputs need none: new files are added, gone ones dropped)")
    parser.add_argument("--tls-ca", metavar="FILE", help="CA certificate for a TLS scheduler")
    parser.add_argument("--tls-cert", metavar="FILE", help="client certificate for a TLS scheduler")
    parser.add_argument("--tls-key", metavar="FILE", help="client key for a TLS scheduler")


def _stage_parser(name: str):
    module = importlib.import_module(f"jobs.{name}")
    parser = argparse.ArgumentParser(prog=f"audiofeat {name}")
    module.add_arguments(parser)
    return module, parser


def stage_argv(parser: argparse.ArgumentParser, args) -> list[str]:
    """The command line for one stage: the config, plus the run options that stage accepts."""
    known = set(parser._option_string_actions)  # noqa: SLF001 - argparse has no public lookup
    argv = [args.config]
    for option in _PASSED_ON:
        if option not in known:
            continue
        value = getattr(args, option[2:].replace("-", "_"), None)
        if value is None or value is False:
            continue
        if value is True:
            argv.append(option)
        elif isinstance(value, list):
            for item in value:
                argv += [option, str(item)]
        else:
            argv += [option, str(value)]
    return argv


def main(args) -> int:
    from jobs.config import STAGES, load_config

    cfg = load_config(args.config)
    if args.stages is not None:
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise UsageError(f"--stages: unknown stage {unknown[0]!r} (choose from {', '.join(STAGES)})")
        if not stages:
            raise UsageError(f"--stages: no stage named (choose from {', '.join(STAGES)})")
    else:
        stages = cfg.stage_list
    # each stage once, in the pipeline's order (a model is trained on the store extract made,
    # and scores come from the model train made), however they were listed
    stages = [name for name in STAGES if name in stages]
    if "extract" in stages and "train" in stages:
        from jobs.extract import apply_overrides
        from jobs.train import check_labels_before_extract

        try:
            apply_overrides(cfg, args)  # --input, as extract will take it
        except UsageError as exc:
            raise UsageError(f"extract: {exc}") from None
        try:
            check_labels_before_extract(cfg)
        except UsageError as exc:  # (the inputs themselves are extract's: stage "extract")
            raise UsageError(f"{getattr(exc, 'stage', 'train')}: {exc}") from None
    status = EXIT_OK
    for name in stages:
        try:
            module, parser = _stage_parser(name)
        except ModuleNotFoundError as exc:
            if exc.name != f"jobs.{name}":
                raise
            raise UsageError(f"stages: the {name} stage is not available in this build") from None
        print(f"run: stage {name}", file=sys.stderr, flush=True)
        stage_args = parser.parse_args(stage_argv(parser, args))
        try:
            code = int(module.main(stage_args) or 0)
        except UsageError as exc:
            raise UsageError(f"{name}: {exc}") from None
        if code == EXIT_USAGE:
            return code
        status = max(status, code)
    return status

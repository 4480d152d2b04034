"""``python -m jobs`` is the ``audiofeat`` command."""

from jobs.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""audiofeat jobs: the Dask pipelines, the command line, stores, scoring and queries."""

__version__ = "0.1.0"

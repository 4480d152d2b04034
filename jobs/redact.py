"""Credentials out of what the product prints and stores.

fsspec URLs can carry secrets (``https://user:password@host/...``, presigned ``?X-Amz-Signature=``
or ``?sig=`` query parameters, ``?token=...``). The job keeps the full URL in memory and in its
private plan (it needs it to read the file again on resume), but every message, table
(``files.parquet``, ``failures.parquet``) and manifest shows the URL with those parts masked.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

# scheme://user:password@host -> scheme://user:***@host ; scheme://token@host -> scheme://***@host
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^/?#@\s:]*)(?P<password>:[^/?#@\s]*)?@")
# ?X-Amz-Signature=...&sig=...&token=... -> the value masked, the parameter kept
_SECRET_PARAM = re.compile(
    r"(?i)(?P<key>[?&][^=&#\s]*(?:sig|signature|token|secret|password|passwd|credential|key|auth|sas)"
    r"[^=&#\s]*=)[^&#\s]*")


def _mask_userinfo(match: re.Match) -> str:
    if match.group("password"):
        return f"{match.group('scheme')}{match.group('user')}:***@"
    return f"{match.group('scheme')}***@"


def redact(text: str) -> str:
    """``text`` with URL passwords, user tokens and secret-looking query values masked.

    Examples
    --------
    >>> redact("https://alice:s3cret@example.org/a.wav?X-Amz-Signature=abc&part=1")
    'https://alice:***@example.org/a.wav?X-Amz-Signature=***&part=1'
    >>> redact("/data/plain/path.wav")
    '/data/plain/path.wav'
    """
    if "://" not in text and "=" not in text:
        return text
    return _SECRET_PARAM.sub(r"\g<key>***", _USERINFO.sub(_mask_userinfo, text))


def redact_column(table, name: str):
    """A pyarrow table with column ``name`` (strings) redacted, unchanged when nothing needs it."""
    import pyarrow as pa

    column = table[name].to_pylist()
    masked = [None if v is None else redact(v) for v in column]
    if masked == column:
        return table
    return table.set_column(table.schema.get_field_index(name), name, pa.array(masked, pa.string()))

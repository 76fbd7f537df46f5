"""One wording for errors shown to the user, whatever module met them."""

from __future__ import annotations

import re


def one_line(error: BaseException, limit: int = 120) -> str:
    """An exception as one short line: the OS's reason in words when there is one
    (``No space left on device``), without the ``[Errno N]`` number or the path the
    report names already; whitespace folded; cut at ``limit``; the type name if empty."""
    text = getattr(error, "strerror", None) or str(error)
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", " ".join(str(text).split()))
    text = re.sub(r":\s*'[^']*'$", "", text) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."

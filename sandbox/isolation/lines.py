"""Newline-delimited answers read from a byte stream in linear time (stdlib only).

The runner answers one JSON object per line, and a line can be tens of megabytes (a test's
stdout up to the output limit). Appending each chunk to ``bytes`` and searching the whole
buffer for a newline after every read is quadratic in the line's length (63 MB took 33 s).
:class:`LineBuffer` appends in place and searches only the bytes not searched yet.
"""

from __future__ import annotations

__all__ = ["LineBuffer"]


class LineBuffer:
    r"""Bytes in (:meth:`feed`), complete lines out (:meth:`pop_line`), each byte scanned once.

    Example:
        >>> buf = LineBuffer()
        >>> buf.feed(b'{"a": 1}\n{"b"')
        >>> buf.pop_line(), buf.pop_line()
        (b'{"a": 1}', None)
        >>> buf.feed(b': 2}\n')
        >>> buf.pop_line()
        b'{"b": 2}'

    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | memoryview) -> None:
        """Append ``data`` (amortised O(len(data)))."""
        self._buf += data

    def pop_line(self) -> bytes | None:
        r"""The next complete line without its ``\n``, or None while the line is incomplete."""
        end = self._buf.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(self._buf)
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        self._scanned = 0
        return line

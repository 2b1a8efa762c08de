"""LineBuffer: the isolation backends' reader of newline-delimited runner answers."""

from sandbox.isolation.lines import LineBuffer


def test_lines_split_across_chunks_come_out_whole_and_in_order():
    payload = b"".join(b'{"i": %d, "pad": "%s"}\n' % (i, b"x" * (i * 37 % 5000)) for i in range(200))
    buf, lines = LineBuffer(), []
    for start in range(0, len(payload), 1009):  # chunk boundaries fall anywhere, also on the newline
        buf.feed(payload[start:start + 1009])
        while (line := buf.pop_line()) is not None:
            lines.append(line)
    assert lines == payload.split(b"\n")[:-1] and len(buf) == 0


def test_incomplete_line_stays_and_searching_resumes_where_it_stopped():
    buf = LineBuffer()
    for _ in range(1000):
        buf.feed(b"a" * 64)
        assert buf.pop_line() is None
    assert buf._scanned == 64_000  # everything fed was searched once, nothing will be searched again
    buf.feed(b"b\nrest")
    assert buf.pop_line() == b"a" * 64_000 + b"b" and buf.pop_line() is None and len(buf) == 4
    buf.feed(b"\n\n")
    assert (buf.pop_line(), buf.pop_line(), buf.pop_line()) == (b"rest", b"", None)

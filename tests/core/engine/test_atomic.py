"""Set files written whole and atomically (core/engine/atomic.py): a stream of many small pieces is
written in few system calls, and what lands is exactly the stream."""

from __future__ import annotations

from core.engine import atomic
from core.engine.fs import FileSystem


class _Counting(FileSystem):
    def __init__(self):
        super().__init__()
        self.writes: list[int] = []

    def write(self, f, data):
        self.writes.append(len(data))
        return super().write(f, data)


def test_a_stream_of_small_pieces_is_written_in_a_few_writes(tmp_path):
    pieces = [b"%064x  Data/f%05d.txt\n" % (i, i) for i in range(20000)]   # ~1.8 MB in 20,000 pieces
    fs = _Counting()
    atomic.replace_file(tmp_path / "Latest.sha256", iter(pieces), fs=fs, tmp_dir=tmp_path)
    assert (tmp_path / "Latest.sha256").read_bytes() == b"".join(pieces)
    assert len(fs.writes) == 2 and fs.writes[0] >= 1 << 20


def test_a_big_piece_goes_as_it_is_and_small_ones_around_it_are_kept_in_order(tmp_path):
    big = b"B" * (3 << 20)
    stream = [b"a", big, b"c" * 10, b"d"]
    fs = _Counting()
    atomic.replace_file(tmp_path / "f", iter(stream), fs=fs, tmp_dir=tmp_path)
    assert (tmp_path / "f").read_bytes() == b"".join(stream)
    assert fs.writes == [1 + len(big), 11]

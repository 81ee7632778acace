"""Retrying and RateLimited around a real LocalBackend; faults come from a wrapper that fails the
Nth call of an operation, time from a FakeClock that records each wait."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from core.engine.progress import FakeClock
from core.engine.storage import LocalBackend, RateLimited, Retrying
from core.engine.storage.base import CHUNK
from core.errors import BadBlobName, BlobNotFound, DiskFull, RcloneFailed, RemoteAuthFailed, RemoteFull, RemoteUnavailable


@dataclass
class RecordingClock(FakeClock):
    waits: list = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        super().sleep(seconds)


class Faulty:
    """A backend whose operations fail as scripted: ``fail[op] = [error, error, ...]`` raises those
    errors on the next calls of ``op``; ``cut_get_after`` breaks a get's stream after N chunks, once."""

    def __init__(self, inner):
        self.inner = inner
        self.where = inner.where
        self.fail: dict[str, list] = {}
        self.calls: list[tuple] = []
        self.cut_get_after: int | None = None
        self.cut_list_after: int | None = None

    def _maybe_fail(self, op, *args):
        self.calls.append((op, *args))
        errors = self.fail.get(op)
        if errors:
            raise errors.pop(0)

    def put(self, name, data):
        self._maybe_fail("put", name)
        self.inner.put(name, data)

    def get(self, name, offset=0):
        self._maybe_fail("get", name, offset)
        gen = self.inner.get(name, offset)
        if self.cut_get_after is None:
            return gen
        n, self.cut_get_after = self.cut_get_after, None
        return self._cut(gen, n)

    @staticmethod
    def _cut(gen, n):
        for i, chunk in enumerate(gen):
            if i == n:
                gen.close()
                raise RemoteUnavailable(where="x", reason="connection reset by peer")
            yield chunk

    def stat(self, name):
        self._maybe_fail("stat", name)
        return self.inner.stat(name)

    def list(self, folder=""):
        self._maybe_fail("list", folder)
        for i, info in enumerate(self.inner.list(folder)):
            if self.cut_list_after == i:
                self.cut_list_after = None
                raise RemoteUnavailable(where="x", reason="timeout")
            yield info

    def delete(self, name):
        self._maybe_fail("delete", name)
        self.inner.delete(name)

    def clean_partial(self):
        self.inner.clean_partial()

    def close(self):
        self.inner.close()


@pytest.fixture
def faulty(tmp_path):
    return Faulty(LocalBackend(tmp_path / "set"))


def transient():
    return RemoteUnavailable(where="rclone:x:y", reason="connection refused")


def test_transient_errors_are_retried_with_growing_waits(faulty):
    clock = RecordingClock()
    b = Retrying(faulty, clock, attempts=5, first_wait=1.0, factor=2.0, max_wait=3.0)
    faulty.fail["put"] = [transient(), RcloneFailed(reason="restarting"), transient(), transient()]
    b.put("plugback.json", b"{}")
    assert b.stat("plugback.json").size == 2
    assert b.retries == 4
    # waits 1, 2, 3 (capped), 3, each with up to half taken off at random
    for wait, cap in zip(clock.waits, [1.0, 2.0, 3.0, 3.0], strict=True):
        assert cap / 2 <= wait <= cap


def test_retries_give_up_after_the_attempts(faulty):
    clock = RecordingClock()
    b = Retrying(faulty, clock, attempts=3)
    faulty.fail["stat"] = [transient() for _ in range(5)]
    with pytest.raises(RemoteUnavailable):
        b.stat("plugback.json")
    assert len(clock.waits) == 2 and [c[0] for c in faulty.calls] == ["stat"] * 3


@pytest.mark.parametrize("error", [BlobNotFound(where="x", name="n"), RemoteAuthFailed(where="x", reason="401"),
                                   RemoteFull(where="x", reason="quota"), BadBlobName(name="../x"),
                                   DiskFull(path="/media/x"), ValueError("a bug")])
def test_permanent_errors_are_never_retried(faulty, error):
    clock = RecordingClock()
    b = Retrying(faulty, clock)
    faulty.fail["delete"] = [error]
    with pytest.raises(type(error)):
        b.delete("objects/ab/x")
    assert clock.waits == [] and b.retries == 0 and len(faulty.calls) == 1


def test_a_retried_put_sends_the_stream_whole_again(faulty):
    b = Retrying(faulty, RecordingClock())
    calls = []

    def counted():
        calls.append(1)
        yield b"abc"
        if len(calls) == 1:
            raise RemoteUnavailable(where="x", reason="connection reset")
        yield b"def"

    b.put("objects/ab/y", counted)
    assert calls == [1, 1] and b"".join(b.get("objects/ab/y")) == b"abcdef"


def test_a_get_cut_off_continues_from_the_last_byte(faulty):
    data = bytes(range(256)) * (CHUNK // 256) * 3 + b"tail"
    faulty.inner.put("objects/ab/big", data)
    b = Retrying(faulty, RecordingClock())
    faulty.cut_get_after = 2
    assert b"".join(b.get("objects/ab/big")) == data
    assert [c for c in faulty.calls if c[0] == "get"] == [("get", "objects/ab/big", 0),
                                                          ("get", "objects/ab/big", 2 * CHUNK)]


def test_a_missing_blob_is_not_retried_on_get(faulty):
    b = Retrying(faulty, RecordingClock())
    with pytest.raises(BlobNotFound):
        b.get("objects/ab/none")
    assert b.retries == 0


def test_a_list_cut_off_starts_again_without_repeating_names(faulty):
    names = [f"objects/{a}/{i}" for a in ("0a", "ff") for i in range(3)] + ["plugback.json"]
    for n in names:
        faulty.inner.put(n, b"x")
    b = Retrying(faulty, RecordingClock())
    faulty.cut_list_after = 4
    assert [i.name for i in b.list()] == names
    assert b.retries == 1


def test_rate_limit_spaces_operations(faulty):
    clock = RecordingClock()
    b = RateLimited(faulty, clock, ops_per_second=2, burst=1)
    for i in range(5):
        b.put(f"objects/ab/{i}", b"x")
    assert clock.mono == pytest.approx(2.0)      # the first is free, then one every half second


def test_rate_limit_meters_bytes_both_ways(faulty):
    clock = RecordingClock()
    b = RateLimited(faulty, clock, bytes_per_second=1_000_000)
    data = b"x" * 3_000_000
    b.put("objects/ab/big", data)
    assert clock.mono == pytest.approx(2.0)      # a second's worth may go at once
    assert b"".join(b.get("objects/ab/big")) == data
    assert clock.mono == pytest.approx(5.0)
    assert b.stat("objects/ab/big").size == len(data)


def test_wrappers_stack(faulty):
    clock = RecordingClock()
    b = Retrying(RateLimited(faulty, clock, ops_per_second=10), clock)
    faulty.fail["put"] = [transient()]
    b.put("plugback.json", b"{}")
    assert [i.name for i in b.list()] == ["plugback.json"] and b.retries == 1


# --- fail_fast: a person waits (the window's browse, unlock, Test connection) -------------------

UNREACHABLE = {
    "refused": 'read metadata failed: Propfind "http://127.0.0.1:9/s": dial tcp 127.0.0.1:9: connect: connection refused',
    "DNS": "dial tcp: lookup dav.example on 10.0.0.53:53: no such host",
    "no network": "dial tcp 192.0.2.1:443: connect: network is unreachable",
    "no route": "dial tcp 192.0.2.1:443: connect: no route to host",
    "a download's reply": '{\n\t"error": "failed to make Fs: read metadata failed: Propfind \\"http://h/s\\": '
                          'dial tcp 127.0.0.1:9: connect: connection refused",\n\t"status": 500\n}',
}


@pytest.mark.parametrize("case", UNREACHABLE)
@pytest.mark.parametrize("op", ["stat", "get", "list"])
def test_fail_fast_raises_an_unreachable_remote_at_once(faulty, case, op):
    clock = RecordingClock()
    b = Retrying(faulty, clock, fail_fast=True)
    faulty.inner.put("plugback.json", b"{}")
    faulty.fail[op] = [RemoteUnavailable(where="rclone:dav:set", reason=UNREACHABLE[case])]
    with pytest.raises(RemoteUnavailable) as caught:
        {"stat": lambda: b.stat("plugback.json"), "get": lambda: b"".join(b.get("plugback.json")),
         "list": lambda: list(b.list(""))}[op]()
    assert clock.waits == [] and b.retries == 0 and len(faulty.calls) == 1
    message = caught.value.message
    assert message.startswith("Can't reach rclone:dav:set: dial tcp") and "check the network" in message
    assert '"error"' not in message and "\n" not in message
    assert caught.value.code == "remote_unavailable"      # (the window and the agent treat it as before)


@pytest.mark.parametrize("reason", ["503 Service Unavailable", "connection reset by peer", "timeout awaiting response"])
def test_fail_fast_still_retries_a_server_that_answers_badly(faulty, reason):
    clock = RecordingClock()
    b = Retrying(faulty, clock, fail_fast=True)
    faulty.fail["put"] = [RemoteUnavailable(where="x", reason=reason), RcloneFailed(reason="restarting")]
    b.put("plugback.json", b"{}")
    assert b.retries == 2 and len(clock.waits) == 2


def test_without_fail_fast_an_unreachable_remote_is_retried(faulty):
    clock = RecordingClock()
    b = Retrying(faulty, clock, attempts=3)
    faulty.fail["stat"] = [RemoteUnavailable(where="x", reason=UNREACHABLE["refused"]) for _ in range(3)]
    with pytest.raises(RemoteUnavailable) as caught:
        b.stat("plugback.json")
    assert len(clock.waits) == 2 and not caught.value.message.startswith("Can't reach")


def test_only_a_backend_whose_class_stages_is_asked_to_stage(tmp_path):
    """A wrapper that passes unknown calls on (``__getattr__``) must not have staged bytes go past
    it (the agent counts the bytes it puts): it is not taken for a stager, the wrappers here are."""
    from core.engine.storage.base import can_stage

    class Stager:
        where = "x"
        can_stage = True

    class PassesOn:
        where = "x"

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

    assert can_stage(Stager()) and can_stage(Retrying(Stager())) and can_stage(RateLimited(Stager()))
    assert not can_stage(PassesOn(Stager())) and not can_stage(Retrying(PassesOn(Stager())))
    assert not can_stage(LocalBackend(tmp_path)) and not can_stage(Retrying(LocalBackend(tmp_path)))


class _Mover:
    """A stager over a folder (a staged blob waits in memory; a commit puts it): ``lose`` commits
    move the blob and then fail as a cut connection would (the answer lost)."""

    can_stage = True

    def __init__(self, inner, lose: int = 0):
        self.inner, self.where, self.lose = inner, inner.where, lose
        self.waiting: dict[str, bytes] = {}

    def stage(self, name, data):
        from core.engine.storage.base import Staged

        self.waiting[name] = bytes(data)
        return Staged(name, "tmp/" + "0" * 32 + ".part")

    def commit(self, staged):
        if staged.name not in self.waiting:
            raise BlobNotFound(where=self.where, name=staged.where)     # moved already
        self.inner.put(staged.name, self.waiting.pop(staged.name))
        if self.lose:
            self.lose -= 1
            raise transient()

    def stat(self, name):
        return self.inner.stat(name)

    def read_staged(self, staged, offset=0):
        """Chunks of 3 bytes from ``offset``; ``cut`` reads are cut off after the first chunk."""
        data = self.waiting[staged.name]
        self.reads.append(offset)

        def chunks():
            for at in range(offset, len(data), 3):
                if at > offset and self.cut:
                    self.cut -= 1
                    raise transient()
                yield data[at:at + 3]
        return chunks()

    reads: list[int]
    cut = 0


def test_a_read_back_in_tmp_cut_off_continues_from_the_last_byte(tmp_path):
    inner = _Mover(LocalBackend(tmp_path / "set"))
    inner.reads, inner.cut = [], 2
    r = Retrying(inner, RecordingClock(), attempts=3)
    staged = r.stage("index/" + "ab" * 32, b"0123456789")
    assert b"".join(r.read_staged(staged)) == b"0123456789"
    assert inner.reads == [0, 3, 6] and r.retries == 2


def test_a_commit_retried_after_its_answer_was_lost_finds_the_name_and_a_missing_staged_blob_fails(tmp_path):
    from core.engine.storage.base import Staged

    inner = _Mover(LocalBackend(tmp_path / "set"), lose=1)
    r = Retrying(inner, RecordingClock(), attempts=3)
    r.commit(r.stage("objects/ab/x", b"content"))     # moved, answer lost; the retry finds it there
    assert b"".join(inner.inner.get("objects/ab/x")) == b"content"
    with pytest.raises(BlobNotFound):                  # never staged: not taken for done
        r.commit(Staged("objects/ab/y", "tmp/" + "1" * 32 + ".part"))

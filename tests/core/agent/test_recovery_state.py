"""core/agent/recovery_state.py: a new encrypted set's recovery key is shown once and reminded until kept."""

import json
import os
import uuid

import pytest

from core.agent.config import Destination, Job
from core.agent.handlers import Handlers
from core.agent.recovery_state import RecoveryKeyState, reminders
from core.errors import BadRequest


def job(name, *, encrypt=True, set_id=None):
    return Job(name=name, sources=["/x"], destination=Destination(path=f"/d/{name}"), encrypt=encrypt, set_id=set_id)


def test_reminders_name_the_encrypted_sets_not_yet_kept(tmp_path):
    state = RecoveryKeyState(tmp_path)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    jobs = [job("A", set_id=a), job("B", set_id=b), job("New"), job("Plain", encrypt=False, set_id=str(uuid.uuid4()))]
    assert reminders(state, jobs) == [{"job": "A", "set_id": a, "shown": False}, {"job": "B", "set_id": b, "shown": False}]
    state.record(a, confirmed=False)          # shown, "Later"
    assert reminders(state, jobs)[0] == {"job": "A", "set_id": a, "shown": True}
    state.record(a, confirmed=True)
    state.record(a, confirmed=True)           # twice is once
    assert reminders(state, jobs) == [{"job": "B", "set_id": b, "shown": False}]
    on_disk = json.loads((tmp_path / "recovery-keys.json").read_text())
    assert on_disk == {"shown": [a], "confirmed": [a]}
    if os.name == "posix":
        assert (tmp_path / "recovery-keys.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"confirmed": "abc", "shown": [3, "x"]}'])
def test_a_damaged_record_means_reminding_again_not_failing(tmp_path, content):
    (tmp_path / "recovery-keys.json").write_text(content)
    state = RecoveryKeyState(tmp_path)
    sid = str(uuid.uuid4())
    assert reminders(state, [job("A", set_id=sid)]) == [{"job": "A", "set_id": sid, "shown": False}]
    state.record(sid, confirmed=True)
    assert reminders(state, [job("A", set_id=sid)]) == []


def test_the_agent_commands(make_agent, paths):
    table = Handlers(make_agent()[0]).table()
    sid = str(uuid.uuid4())
    assert table["recovery_reminders"]({}) == {"reminders": []}
    for bad in ({}, {"set_id": "../x"}, {"set_id": sid, "confirmed": "yes"}):
        with pytest.raises(BadRequest):
            table["recovery_key_kept"](bad)
    assert table["recovery_key_kept"]({"set_id": sid, "confirmed": True}) == {"set_id": sid, "confirmed": True}
    assert RecoveryKeyState(paths.data_dir).confirmed() == {sid}

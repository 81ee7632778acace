"""Live mode's loop with a fake clock (issue #12): debounce, one run at a time, only live jobs."""

from core.agent.live import LiveLoop


class Runs:
    """The agent's side: queues a run unless one of the job runs (then the loop must wait)."""

    def __init__(self):
        self.started: list[str] = []
        self.busy = False

    def start(self, job: str) -> bool:
        if self.busy:
            return False
        self.started.append(job)
        return True


def loop_at(now, runs):
    return LiveLoop(lambda: now[0], lambda: 30.0, lambda job: job == "Docs", runs.start)


def test_debounce_waits_for_quiet_then_runs_once():
    now, runs = [0.0], Runs()
    loop = loop_at(now, runs)
    assert loop.due_now() is None
    loop.changed("Docs")
    assert loop.due_now() == 30.0
    now[0] = 20.0
    loop.changed("Docs")                          # another change restarts the quiet period
    assert loop.due_now() == 30.0 and runs.started == []
    now[0] = 50.0
    assert loop.due_now() is None and runs.started == ["Docs"]
    assert loop.due_now() is None and runs.started == ["Docs"]   # once


def test_a_change_during_a_run_makes_one_more_run_after_it():
    now, runs = [0.0], Runs()
    loop = loop_at(now, runs)
    loop.changed("Docs")
    now[0] = 30.0
    loop.due_now()
    loop.run_began("Docs")
    runs.busy = True                              # the run goes on; a change comes in
    now[0] = 31.0
    loop.changed("Docs")
    now[0] = 61.0
    assert loop.due_now() == 30.0 and runs.started == ["Docs"]   # not twice at once: wait
    runs.busy = False
    now[0] = 91.0
    assert loop.due_now() is None and runs.started == ["Docs", "Docs"]


def test_only_live_jobs_and_a_file_that_never_settles_still_gets_backed_up():
    now, runs = [0.0], Runs()
    loop = loop_at(now, runs)
    loop.changed("Other")                         # not a live job
    assert loop.due_now() is None
    for t in range(0, 300, 10):                   # changes every 10 s, never 30 s quiet
        now[0] = float(t)
        loop.changed("Docs")
        loop.due_now()
    assert runs.started == []
    now[0] = 300.0
    loop.changed("Docs")
    loop.due_now()
    assert runs.started == ["Docs"]               # 10 quiet periods after the first change

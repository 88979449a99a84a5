"""The local executor: the task's runner in this process, on one device."""

from __future__ import annotations

from collections.abc import Iterator

from zcfast.executors.base import Executor
from zcfast.executors.task import ScoreTask, make_runner


class LocalExecutor(Executor):
    """Runs every chunk here, in input order, on ``device`` (default cpu). Runners are kept
    per task, so repeated calls (a search's asks) reuse the minibatch already on the device."""

    def __init__(self, device=None):
        self.device = str(device) if device is not None else "cpu"
        self._runners: dict = {}

    def run(self, task: ScoreTask, archs) -> Iterator:
        archs = list(archs)
        if not archs:
            return
        r = self._runners.get(task)
        if r is None:
            r = self._runners[task] = make_runner(task, self.device)
        yield from r.iter(archs)

    def describe(self) -> dict:
        return {"executor": "local", "device": self.device}

    def close(self) -> None:
        self._runners.clear()

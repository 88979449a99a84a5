"""What every executor provides (see zcfast/executors/__init__.py)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from zcfast.executors.task import ScoreTask, collect


class Executor:
    """Runs a :class:`ScoreTask` over archs and streams ``(archs, {proxy: array})`` chunks.

    Contract of :meth:`run`: every arch of the (duplicate-free) input comes back exactly once,
    with its scores; chunks may come in any order, the archs inside a chunk keep their input
    order. Consumers key results by arch, never by position in the stream.
    """

    def run(self, task: ScoreTask, archs) -> Iterator:
        raise NotImplementedError

    def score(self, task: ScoreTask, archs) -> dict:
        """``{proxy: (n,) float64}`` aligned with ``archs`` (repeats scored once)."""
        archs = list(archs)
        uniq = list(dict.fromkeys(archs))
        if not uniq:
            return {p: np.empty(0) for p in task.proxies}
        return collect(self.run(task, uniq), archs, task.proxies)

    def describe(self) -> dict:
        """Plain facts for a results file's meta (which executor, how many workers...)."""
        return {}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

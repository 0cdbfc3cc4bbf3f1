"""Ranks as threads of one process: the engine's collective steps (gather, barrier) really wait for
every rank, as under torchrun, without starting processes. A rank that dies (an exception, an
interrupt) breaks the others' next exchange, as a lost gloo peer does (RuntimeError), so that
"one rank interrupted" runs exactly the code paths of a real group. The real 2-process gloo runs
are tests/test_torchrun.py and the slow form of tests/test_fault_injection.py.

    world = ThreadWorld(monkeypatch, 3)
    outcomes = world.run(lambda rank: run_job(job_for(rank), options))  # {rank: result or exception}
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import repro.engine.run as run_module
from repro.engine.devices import Collective, Ranks

TIMEOUT = 120.0  # seconds a rank waits for the others before the test fails instead of hanging


class ThreadWorld:
    def __init__(self, monkeypatch, world_size: int):
        self.world_size = world_size
        self.local = threading.local()
        self.cond = threading.Condition()
        self._reset()
        self.gathered: dict[int, list[Any]] = {}  # rank -> every value it gathered, in order
        world = self
        monkeypatch.setattr(run_module, "setup_distributed", lambda device="auto": Ranks(world.rank, world_size, 0))

        class Threaded(Collective):  # the engine's Collective, over threads instead of torch.distributed
            def _all_gather(self, value):
                world.gathered.setdefault(self.ranks.rank, []).append(value)
                return world.exchange(self.ranks.rank, value)

            def _barrier(self):
                world.exchange(self.ranks.rank, None)

        monkeypatch.setattr(run_module, "Collective", Threaded)

    @property
    def rank(self) -> int:
        return self.local.rank

    def _reset(self) -> None:
        self.exchanges: dict[int, dict[int, Any]] = {}  # k -> {rank: value} of every rank's k-th exchange
        self.count = [0] * self.world_size
        self.dead = False

    def exchange(self, rank: int, value: Any) -> list[Any]:
        """all_gather_object: every rank's value, in rank order, to every rank (each rank's k-th
        exchange meets the others' k-th). Once a rank has died, an exchange it did not join fails."""
        with self.cond:
            k, self.count[rank] = self.count[rank], self.count[rank] + 1
            values = self.exchanges.setdefault(k, {})
            values[rank] = value
            self.cond.notify_all()
            complete = lambda: len(values) == self.world_size  # noqa: E731
            if not self.cond.wait_for(lambda: complete() or self.dead, TIMEOUT) or not complete():
                raise RuntimeError("Connection closed by peer (a rank of the group died)")
            return [values[r] for r in range(self.world_size)]

    def run(self, work: Callable[[int], Any]) -> dict[int, Any]:
        """`work(rank)` on every rank at once; {rank: its return value, or the exception it raised}."""
        self._reset()
        outcomes: dict[int, Any] = {}

        def main(rank: int) -> None:
            self.local.rank = rank
            try:
                outcomes[rank] = work(rank)
            except BaseException as err:  # noqa: BLE001 - the outcome of the rank, for the test to judge
                outcomes[rank] = err
                with self.cond:  # the others' next exchange fails, as with a lost peer
                    self.dead = True
                    self.cond.notify_all()

        threads = [threading.Thread(target=main, args=(rank,), daemon=True) for rank in range(self.world_size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 2)
        assert not any(thread.is_alive() for thread in threads), "a rank hung"
        return outcomes

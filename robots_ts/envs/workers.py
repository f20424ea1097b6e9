"""A fixed pool of worker threads, each with its own slot of thread-local resources.

MuJoCo releases the GIL in ``mj_step`` and in rendering, so threads stepping disjoint worlds run in
parallel. Each worker keeps a dict of per-thread resources (an OpenGL context for the depth camera
must stay with the thread that made it current). ``run(fn)`` calls ``fn(k, resources_k)`` on worker
``k`` for every k and returns the results in order; with one worker it runs inline.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable


class WorkerPool:
    def __init__(self, num_workers: int):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.num_workers = num_workers
        self.resources: list[dict[str, Any]] = [{} for _ in range(num_workers)]
        self._threads: list[threading.Thread] = []
        self._inbox: list[queue.SimpleQueue] = []
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        if num_workers > 1:
            for k in range(num_workers):
                q: queue.SimpleQueue = queue.SimpleQueue()
                t = threading.Thread(target=self._loop, args=(k, q), daemon=True, name=f"robots_ts-worker-{k}")
                t.start()
                self._inbox.append(q)
                self._threads.append(t)

    def _loop(self, k: int, inbox: queue.SimpleQueue) -> None:
        while True:
            fn = inbox.get()
            if fn is None:
                return
            try:
                self._outbox.put((k, fn(k, self.resources[k]), None))
            except BaseException as exc:  # handed to the caller, re-raised there
                self._outbox.put((k, None, exc))

    def run(self, fn: Callable[[int, dict], Any]) -> list:
        if not self._threads:
            return [fn(0, self.resources[0])]
        for q in self._inbox:
            q.put(fn)
        results: list = [None] * self.num_workers
        error = None
        for _ in range(self.num_workers):
            k, res, exc = self._outbox.get()
            results[k] = res
            error = error or exc
        if error is not None:
            raise error
        return results

    def close(self, finalize: Callable[[int, dict], Any] | None = None) -> None:
        """Run ``finalize`` on every worker (to free thread-bound resources), then stop them."""
        if finalize is not None:
            self.run(finalize)
        for q in self._inbox:
            q.put(None)
        for t in self._threads:
            t.join(timeout=5)
        self._threads, self._inbox = [], []

"""A one-thread executor whose thread never holds the process open.

`concurrent.futures.ThreadPoolExecutor` joins its threads when the interpreter exits, so a thread
stuck in a model load or a hub call that retries keeps a stopped server alive for minutes. Work
that can block on the network or on a model (job lanes, image analysis) runs here instead: the
thread is a daemon, and `shutdown` waits for it at most `timeout` seconds. A job cut off that way
is left `interrupted` by its lane and resumed at the next start.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

_STOP = object()


class DaemonExecutor(concurrent.futures.Executor):
    """`threads` daemon threads (started on first use) take calls in the order they came."""

    def __init__(self, name: str, threads: int = 1) -> None:
        self.name = name
        self.threads = max(1, threads)
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: cannot schedule new work after shutdown")
            while len(self._workers) < self.threads:
                suffix = f"-{len(self._workers)}" if self.threads > 1 else ""
                thread = threading.Thread(target=self._run, name=self.name + suffix, daemon=True)
                thread.start()
                self._workers.append(thread)
            self._items.put((future, fn, args, kwargs))
        return future

    def _run(self) -> None:
        while True:
            item = self._items.get()
            if item is _STOP:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        item = self._items.get_nowait()
                    except queue.Empty:
                        break
                    if item is not _STOP:
                        item[0].cancel()
            for _ in range(max(1, len(self._workers))):  # one stop each, or one for a thread yet to start
                self._items.put(_STOP)
            threads = list(self._workers)
        if not wait:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            if thread is threading.current_thread():
                continue
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def busy(self) -> bool:
        """True while a thread is alive (it may be in the middle of a call)."""
        return any(thread.is_alive() for thread in self._workers)

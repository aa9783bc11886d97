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
from collections.abc import Callable
from typing import Any

_STOP = object()


class DaemonExecutor(concurrent.futures.Executor):
    def __init__(self, name: str) -> None:
        self.name = name
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: cannot schedule new work after shutdown")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
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
            self._items.put(_STOP)
            thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def busy(self) -> bool:
        """True while the thread is alive (it may be in the middle of a call)."""
        return self._thread is not None and self._thread.is_alive()

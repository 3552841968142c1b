"""Background jobs with progress and cancel, so loading and analysis never freeze the UI."""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from viewer.core.errors import RadSightError


class _Worker(QObject):
    """Lives in the job's thread and runs the function there."""

    progress = Signal(int, int, str)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable, name: str, cancel: threading.Event):
        super().__init__()
        self.fn, self.name, self._cancel = fn, name, cancel

    @Slot()
    def run(self) -> None:
        try:
            result = self.fn(lambda d, t, m: self.progress.emit(d, t, m), self._cancel.is_set)
        except RadSightError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # shown to the user as one line; nothing crashes the window
            self.failed.emit(f"{self.name} failed: {type(exc).__name__}: {exc}")
        else:
            self.finished.emit(result)
        finally:
            self.thread().quit()


class Job(QObject):
    """Runs `fn(progress, cancelled)` in a QThread.

    The Job itself stays in the thread that made it (the GUI thread), and its signals
    progress/finished/failed are re-emitted from there: whatever is connected to them, lambdas
    included, runs on the GUI thread, where widgets and the SQLite store may be used.
    """

    progress = Signal(int, int, str)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable, name: str):
        super().__init__()
        self.name = name
        self._cancel = threading.Event()
        self._thread = QThread()
        self._worker = _Worker(fn, name, self._cancel)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self._relay_progress)
        self._worker.finished.connect(self._relay_finished)
        self._worker.failed.connect(self._relay_failed)

    @Slot(int, int, str)
    def _relay_progress(self, done: int, total: int, message: str) -> None:
        self.progress.emit(done, total, message)

    @Slot(object)
    def _relay_finished(self, result) -> None:
        self._thread.wait(2000)
        self.finished.emit(result)

    @Slot(str)
    def _relay_failed(self, message: str) -> None:
        self._thread.wait(2000)
        self.failed.emit(message)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, ms: int = 60000) -> bool:
        return self._thread.wait(ms)

"""A shown main window on its own store with one study loaded (pytest-qt), for viewer tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from viewer.qt.main_window import MainWindow
from viewer.store import Store


def open_window(qtbot, study, db_path):
    """(window, store) with `study` opened in the 1x1 layout and every loading job finished."""
    store = Store(db_path)
    win = MainWindow(store=store)
    qtbot.addWidget(win)
    win.set_layout("1x1")
    win.show()
    qtbot.waitExposed(win)
    win.open_path(study)
    qtbot.waitUntil(lambda: win.state.volume is not None and not win.jobs, timeout=30000)
    return win, store


@contextmanager
def shown_window(qtbot, study, db_path) -> Iterator:
    """open_window's window, closed with its store afterwards (for fixtures)."""
    win, store = open_window(qtbot, study, db_path)
    try:
        yield win
    finally:
        win.close()
        store.close()

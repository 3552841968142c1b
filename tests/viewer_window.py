"""A shown main window on its own store with one study loaded (pytest-qt), for viewer tests."""

from __future__ import annotations

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

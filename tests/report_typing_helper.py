"""Types into the Report panel's free text, one key event at a time, for the kill -9 test in
tests/test_report_panel.py: after each key event has been handled it prints "typed N" (flushed),
so the test knows what had been typed when it sends SIGKILL.

    python tests/report_typing_helper.py DATABASE STUDY_DIR TEXT

Starts the real viewer (MainWindow) on DATABASE, opens STUDY_DIR, opens the Report panel on the
study's latest report (drafting one if it has none), prints "ready REPORT_ID", then types TEXT.
"""

from __future__ import annotations

import sys
import time

from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication


def _wait(app: QApplication, condition, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        app.processEvents()
        time.sleep(0.01)
    return True


def main(database: str, study: str, text: str) -> int:
    from viewer.qt.main_window import MainWindow
    from viewer.store import Store

    app = QApplication(sys.argv[:1])
    store = Store(database)
    window = MainWindow(store=store)
    window.set_layout("1x1")
    window.show()
    window.open_path(study)
    if not _wait(app, lambda: window.state.volume is not None and not window.jobs, 60):
        print("error: the study did not open", flush=True)
        return 2
    panel = window.open_report_panel()
    report = panel.report or panel.new_report()
    if report is None or report.status != "draft":
        print(f"error: no draft to type into: {panel.message.text()}", flush=True)
        return 2
    panel.free_text.setFocus()
    app.processEvents()
    print(f"ready {report.id}", flush=True)
    for n, char in enumerate(text, 1):
        QTest.keyClick(panel.free_text, char)  # returns once the key event has been handled
        print(f"typed {n}", flush=True)
        app.processEvents()
        time.sleep(0.02)  # a fast typist: ~50 keys a second
    print("done", flush=True)
    _wait(app, lambda: False, 60)  # the test kills the process; never exit on our own before that
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

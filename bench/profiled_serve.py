"""`decision-ledger serve` under pyinstrument, every thread profiled.

    python -m bench.profiled_serve REPORT_BASE serve --port ... --database-url ...

pyinstrument samples only the thread that started it, but the server's work happens
off the main thread: FastAPI runs the sync routes in worker threads and the group
committer has a thread of its own. So every thread (the main one included) runs under
a profiler of its own, and when the server has shut down (SIGINT) the sessions are
combined into one report: REPORT_BASE.txt (the call tree), REPORT_BASE.flat.txt (self
time per function) and REPORT_BASE.html. The harness uses this when py-spy is not
installed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer
from pyinstrument.session import Session

_sessions: list[Session] = []
_lock = threading.Lock()
_original_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    profiler = Profiler(interval=0.002, async_mode="disabled")
    profiler.start()
    try:
        _original_run(self)
    finally:
        session = profiler.stop()
        with _lock:
            _sessions.append(session)


def main() -> None:
    base = Path(sys.argv[1])
    sys.argv = ["decision-ledger", *sys.argv[2:]]
    threading.Thread.run = _profiled_run  # type: ignore[method-assign]
    from interfaces.cli import main as cli_main

    profiler = Profiler(interval=0.002, async_mode="disabled")
    profiler.start()
    try:
        cli_main()
    except SystemExit:
        pass
    finally:
        main_session = profiler.stop()
        # Threads still alive (daemons) have not handed in their sessions; wait briefly.
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join(timeout=5)
        with _lock:
            sessions = [main_session, *_sessions]
        combined: Any = sessions[0]
        for session in sessions[1:]:
            combined = Session.combine(combined, session)
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".txt").write_text(ConsoleRenderer(unicode=True, show_all=False).render(combined))
        base.with_suffix(".flat.txt").write_text(
            ConsoleRenderer(flat=True, time="percent_of_total").render(combined)
        )
        base.with_suffix(".html").write_text(HTMLRenderer().render(combined))


if __name__ == "__main__":
    main()

"""A short text summary of a server profile: where the time goes.

For py-spy's raw (collapsed-stack) output, two recordings:

- wall clock (--idle --threads): every thread sampled, running or waiting. Each sample
  is classed by its innermost frame: waiting for PostgreSQL (psycopg's
  Connection.wait), waiting on a lock, event or queue, the event loop idle in
  select(), or running Python. Given: each thread kind split into those classes, and
  the request path (worker threads inside a route) by project function, inclusive:
  what a request spends its time on;
- CPU (--gil): only the thread holding the GIL, so where the one core of Python goes,
  by thread, package and function (self and inclusive), and roughly how much of the
  time the GIL was held at all.

For pyinstrument, the flat report it wrote.

    python -m bench.profile_report REPORT [py-spy|pyinstrument]
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PROJECT = ("application/", "domain/", "infrastructure/", "interfaces/")

#: Where a file belongs, first match wins.
PACKAGES = (
    ("application/", "app: application/"),
    ("domain/", "app: domain/"),
    ("infrastructure/", "app: infrastructure/"),
    ("interfaces/", "app: interfaces/"),
    ("eventsourcing/", "eventsourcing"),
    ("psycopg_pool/", "psycopg (pool)"),
    ("psycopg", "psycopg"),
    ("pydantic", "pydantic"),
    ("fastapi/", "fastapi"),
    ("starlette/", "starlette"),
    ("anyio/", "anyio (thread pool)"),
    ("uvicorn/", "uvicorn"),
    ("h11", "h11 (HTTP/1.1 parsing)"),
    ("httptools", "httptools"),
    ("prometheus_client/", "prometheus_client"),
    ("logging/", "logging"),
    ("json/", "json"),
    ("asyncio/", "asyncio"),
    ("threading.py", "threading"),
    ("queue.py", "queue"),
    ("uuid.py", "uuid"),
    ("dataclasses.py", "dataclasses"),
    ("copy.py", "copy (deepcopy)"),
)


#: Frames worth a line of their own in the CPU view: (label, substring of "function (file)").
SELECTED = (
    ("uvicorn's HTTP/1.1 protocol (h11_impl)", "h11_impl.py"),
    ("  of which h11 parsing", "(h11/"),
    ("BaseHTTPMiddleware (the @app.middleware('http') metrics middleware)", "BaseHTTPMiddleware.__call__"),
    ("BodySizeLimit middleware", "BodySizeLimit.__call__"),
    ("FastAPI solve_dependencies", "solve_dependencies"),
    ("anyio run_sync_in_worker_thread (each sync route or dependency)", "run_sync_in_worker_thread"),
    ("threading Condition.notify (waking threads)", "Condition.notify"),
    ("response validation and serialisation", "serialize_response"),
    ("the route functions (worker threads)", "interfaces/api/routes/"),
    ("DecisionLedger.receipt (token lookup)", "DecisionLedger.receipt"),
    ("GroupCommitter._commit (the group's transaction)", "GroupCommitter._commit"),
    ("  of which the ledger's index rows (_write_index)", "_write_index"),
    ("eventsourcing (mapping, recording)", "(eventsourcing/"),
    ("psycopg", "(psycopg/"),
    ("logging", "(logging/"),
)


def package_of(file: str) -> str:
    for marker, name in PACKAGES:
        if marker in file:
            return name
    return "other: " + (file.rsplit("/", 1)[-1] if file else "?")


def parse(frame: str) -> tuple[str, str, str, int]:
    """(function, short file, full file, line) of a py-spy frame."""
    match = _FRAME.match(frame)
    if not match:
        return frame, "", "", 0
    full = file = match.group("file")
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return match.group("function"), file, full, int(match.group("line") or 0)


_BLOCKING_CALL = re.compile(r"\.(get|wait|acquire|join|select|poll|recv|recv_into|sleep|accept)\(|\bsleep\(")
_source_lines: dict[str, list[str]] = {}


def source_line(full: str, line: int) -> str:
    if full not in _source_lines:
        try:
            _source_lines[full] = Path(full).read_text(errors="replace").splitlines()
        except OSError:
            _source_lines[full] = []
    lines = _source_lines[full]
    return lines[line - 1] if 0 < line <= len(lines) else ""


def wait_class(function: str, file: str, full: str, line: int) -> str:
    """What a sample whose innermost Python frame is this is doing. A thread blocked
    in C (a queue, a lock, a socket) shows the Python line that called it, so that
    line is read to tell waiting from running. (Either may include waiting for the
    GIL: the --gil profile tells who holds it.)"""
    if "psycopg" in file and function.endswith(("wait", "wait_conn", "wait_c", "_wait")):
        return "waiting for PostgreSQL"
    if file.endswith("selectors.py") and "select" in function:
        return "event loop idle (select)"
    if file.endswith(("threading.py", "queue.py")) and function.split(".")[-1] in {
        "wait",
        "get",
        "acquire",
        "_wait_for_tstate_lock",
        "join",
        "put",
    }:
        return "waiting on a lock/event/queue"
    if _BLOCKING_CALL.search(source_line(full, line)):
        return "waiting on a lock/event/queue"
    return "running Python"


def thread_kind(label: str) -> str:
    name = label.split(":", 1)[1].strip() if ":" in label else label
    return re.sub(r"[-_ ]?\d+$", "", name) or "?"


def pct(count: int, total: int) -> str:
    return f"{count / total:6.1%}" if total else "     -"


def read_samples(path: Path) -> list[tuple[str, list[tuple[str, str, str, int]], int]]:
    """(thread, frames outermost first, count) of each distinct stack."""
    samples = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        thread = "?"
        while frames and frames[0].startswith(("thread", "process")):
            thread = frames.pop(0)
        if frames:
            samples.append((thread, [parse(frame) for frame in frames], int(count_text)))
    return samples


def is_project(file: str) -> bool:
    return file.startswith(PROJECT)


def summarise_py_spy(path: Path, top: int = 20) -> str:
    """The wall-clock view from PATH (--idle) and the CPU view from its --gil twin."""
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    request_inclusive: Counter[str] = Counter()
    request_classes: Counter[str] = Counter()
    request_total = total = main_ticks = 0
    for thread, frames, count in read_samples(path):
        function, file, full, line = frames[-1]
        kind = thread_kind(thread)
        klass = wait_class(function, file, full, line)
        total += count
        by_kind[kind][klass] += count
        if kind == "MainThread":
            main_ticks += count
        if any(frame[1].startswith("interfaces/api/routes/") for frame in frames):
            request_total += count
            request_classes[klass] += count
            for name in {f"{f} ({fl})" for f, fl, _, _ in frames if is_project(fl)}:
                request_inclusive[name] += count
    if not total:
        return f"{path}: no samples"
    lines = [f"WALL CLOCK: {total:,} samples of every thread, idle or not ({path.name})", ""]
    lines.append("threads (share of their own samples):")
    for kind, classes in sorted(by_kind.items(), key=lambda item: -sum(item[1].values())):
        kind_total = sum(classes.values())
        split = ", ".join(f"{klass} {count / kind_total:.0%}" for klass, count in classes.most_common())
        lines.append(f"  {kind} ({kind_total:,} samples): {split}")
    if request_total:
        lines += [
            "",
            f"the request path: {request_total:,} samples of worker threads inside a route, by class:",
        ]
        lines += [f"  {pct(count, request_total)}  {klass}" for klass, count in request_classes.most_common()]
        lines += ["", f"the request path by project function, inclusive (top {top}):"]
        lines += [
            f"  {pct(count, request_total)}  {name}" for name, count in request_inclusive.most_common(top)
        ]

    gil_path = path.with_name(path.name.replace(".pyspy.", ".pyspy-gil."))
    if not gil_path.exists():
        return "\n".join(lines) + "\n"
    packages: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    gil_total = 0
    gil_samples = read_samples(gil_path)
    for thread, frames, count in gil_samples:
        gil_total += count
        kinds[thread_kind(thread)] += count
        function, file, _, _ = frames[-1]
        packages[package_of(file)] += count
        self_time[f"{function} ({file})"] += count
        for name in {f"{f} ({fl})" for f, fl, _, _ in frames}:
            inclusive[name] += count
    lines += ["", f"CPU (GIL HELD): {gil_total:,} samples of the thread holding the GIL ({gil_path.name})"]
    if main_ticks:
        lines.append(
            f"  the GIL was held in about {min(1.0, gil_total / main_ticks):.0%} of the sampling ticks "
            "(near 100% means the server is bound by one core of Python)"
        )
    lines += ["", "by thread:"]
    lines += [f"  {pct(count, gil_total)}  {name}" for name, count in kinds.most_common(8)]
    lines += ["", "by package (innermost frame):"]
    lines += [f"  {pct(count, gil_total)}  {name}" for name, count in packages.most_common(15)]
    lines += ["", f"by function, self (top {top}):"]
    lines += [f"  {pct(count, gil_total)}  {name}" for name, count in self_time.most_common(top)]
    project = [(name, count) for name, count in inclusive.most_common() if is_project(name.split("(")[-1])]
    lines += ["", f"by project function, inclusive (top {top}):"]
    lines += [f"  {pct(count, gil_total)}  {name}" for name, count in project[:top]]
    lines += ["", "selected frames, inclusive (the ASGI stack, the thread hops, the commit):"]
    for label, marker in SELECTED:
        count = sum(
            c for _, frames, c in gil_samples if any(marker in f"{f} ({fl})" for f, fl, _, _ in frames)
        )
        lines.append(f"  {pct(count, gil_total)}  {label}")
    return "\n".join(lines) + "\n"


def summarise(path: Path, profiler: str) -> str:
    if profiler == "py-spy":
        return summarise_py_spy(path)
    flat = path.with_suffix(".flat.txt")
    tree = path.with_suffix(".txt")
    if not flat.exists():
        return f"pyinstrument wrote no report at {flat}"
    head = "\n".join(flat.read_text().splitlines()[:60])
    return f"pyinstrument, every thread combined; call tree in {tree}, HTML in {path.with_suffix('.html')}\n{head}\n"


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "py-spy"))

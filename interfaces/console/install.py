"""Installing the console on the app: its pages, forms, static files and the offline /docs."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from interfaces.console import docs, pages, writes
from interfaces.console.context import STATIC_DIR, build_templates


def install_console(app: FastAPI) -> None:
    """Mount /console (pages, forms, static files) and the offline /docs on the app.
    The app must be built with docs_url=None, so that /docs is this one."""
    app.state.console_templates = build_templates()
    app.state.console_codec = None
    for router in (pages.router, writes.router, docs.router):
        app.router.routes.extend(router.routes)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")

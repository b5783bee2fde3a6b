"""Running the API: one process, or several uvicorn workers beside one projection worker.

With several API workers, each has its own group committer and answer cache; they
coordinate only through the database, which is what makes replicas safe. The read
models must be followed by exactly one process, so the API workers then leave the
projections to a `decision-ledger projections run` subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys

import uvicorn

from application.ledger import DecisionLedger
from infrastructure.settings import Settings
from interfaces.api.app import create_app
from interfaces.bootstrap import signer_for


def serve_api(settings: Settings) -> None:
    if settings.workers == 1:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=settings.access_log,
        )
        return
    # Make what every worker shares once, before they start: the tables and the key.
    DecisionLedger(env=settings.database().library_env()).close()
    signer = signer_for(settings)
    os.environ.update(
        {
            "DECISION_LEDGER_DATABASE_URL": settings.database_url,
            "DECISION_LEDGER_SIGNING_KEY": signer.private_key_hex(),
            "DECISION_LEDGER_RUN_PROJECTIONS": "false",
        }
    )
    projection_worker = (
        subprocess.Popen([sys.executable, "-m", "interfaces.cli", "projections", "run"])
        if settings.run_projections
        else None
    )
    try:
        uvicorn.run(
            "interfaces.api.app:app_from_environment",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=settings.access_log,
        )
    finally:
        if projection_worker is not None:
            projection_worker.terminate()
            projection_worker.wait(timeout=30)

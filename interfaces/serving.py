"""Running the API: one process, or several uvicorn workers beside one projection worker.

With several API workers, each has its own group committer and answer cache; they
coordinate only through the database, which is what makes replicas safe. The read
models must be followed by exactly one process, so the API workers then leave the
projections to a `decision-ledger projections run` subprocess.
"""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from application.ledger import DecisionLedger
from infrastructure.answer_stores import SharedAnswers
from infrastructure.settings import Settings
from interfaces.api.app import create_app
from interfaces.bootstrap import keyring_path, signer_for

#: Collect the youngest generation after this many new objects, not 700. With the default,
#: 32 concurrent writers in one process made ~58 collections a second, ~10% of its CPU, and
#: full collections over the ledger's caches paused it for up to 160 ms (measured in process).
YOUNG_GENERATION_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """For a long-running server process: what start-up built (modules, schemas, the app)
    lives for ever, so no collection scans it again; young objects are collected in bigger,
    rarer batches."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)


def worker_app() -> FastAPI:
    """The app for each of several uvicorn worker processes: settings from the environment."""
    app = create_app(Settings())
    tune_garbage_collector()
    return app


def _start_shared_answers(directory: Path, settings: Settings) -> None:
    """Before any worker starts: check the directory can be used, and forget answers a
    server kept there before (its database may have changed since)."""
    if settings.replay_cache_bytes > 0:
        store = SharedAnswers(directory, settings.replay_cache_bytes, settings.database().describe())
        store.clear()
        store.close()


def serve_api(settings: Settings) -> None:
    if settings.workers == 1:
        if settings.shared_answers_dir is not None:
            _start_shared_answers(settings.shared_answers_dir, settings)
        app = create_app(settings)
        tune_garbage_collector()
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=settings.access_log,
            timeout_keep_alive=settings.keep_alive_s,
        )
        return
    # Make what every worker shares once, before they start: a private directory where
    # they share their first answers (removed afterwards; checked first, so a refusal
    # writes nothing), the tables and the key.
    with contextlib.ExitStack() as cleanup:
        answers_dir = settings.shared_answers_dir or Path(
            cleanup.enter_context(tempfile.TemporaryDirectory(prefix="decision-ledger-answers-"))
        )
        _start_shared_answers(answers_dir, settings)
        DecisionLedger(env=settings.library_env()).close()
        # The workers read the key from a 0600 file in a private (0700) directory of this run.
        run_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="decision-ledger-run-")))
        key_file = run_dir / "signing-key"
        signer_for(settings).write_private_copy(key_file)
        os.environ.pop("DECISION_LEDGER_SIGNING_KEY", None)
        ring = keyring_path(settings)
        os.environ.update(
            {
                "DECISION_LEDGER_DATABASE_URL": settings.database_url,
                "DECISION_LEDGER_SIGNING_KEY_FILE": str(key_file),
                "DECISION_LEDGER_RUN_PROJECTIONS": "false",
                "DECISION_LEDGER_RUN_DISPATCHER": "false",
                "DECISION_LEDGER_SHARED_ANSWERS_DIR": str(answers_dir),
                # The workers sign with the key ring when there is one (open local mode's too).
                **(
                    {"DECISION_LEDGER_SIGNING_KEYRING_FILE": str(ring)}
                    if ring is not None and ring.exists()
                    else {}
                ),
            }
        )
        if settings.effectors_file is not None:
            os.environ["DECISION_LEDGER_EFFECTORS_FILE"] = str(settings.effectors_file.absolute())
        if settings.runs_followers:
            projection_worker = subprocess.Popen(
                [sys.executable, "-m", "interfaces.cli", "projections", "run"]
            )
            cleanup.callback(projection_worker.wait, timeout=30)
            cleanup.callback(projection_worker.terminate)
        if settings.run_dispatcher and settings.effectors_file is not None:
            # One dispatcher beside the API workers, as for the projections.
            dispatcher = subprocess.Popen([sys.executable, "-m", "interfaces.cli", "dispatch", "run"])
            cleanup.callback(dispatcher.wait, timeout=30)
            cleanup.callback(dispatcher.terminate)
        uvicorn.run(
            "interfaces.serving:worker_app",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=settings.access_log,
            timeout_keep_alive=settings.keep_alive_s,
        )

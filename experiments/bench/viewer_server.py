"""The viewer served for a real browser: `tracker app` on a free port, and headless Chromium.

Used by the browser test (tests/test_app.py) and the page-time benchmark (app_pages.py).
Needs Debian's chromium and playwright (the dev extra).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    """Until `url` answers 200; fails if the server exits or does not answer in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tracker app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {seconds}s")


@contextmanager
def serve(db: Path, seconds: float = 60) -> Iterator[str]:
    """`tracker app DB` on a free port, healthy; yields its base URL, stops it on exit."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker.cli", "app", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/_stcore/health", proc, seconds)
        yield base
    finally:
        proc.terminate()  # SIGTERM, as a process manager stops it
        proc.wait(timeout=20)
        # `tracker app` execs Streamlit, so nothing of it may outlive the process stopped.
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise AssertionError(f"tracker app left a server on port {port}")


def launch(playwright: Any) -> Any:
    """Headless Debian Chromium through playwright (no downloaded browser)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)

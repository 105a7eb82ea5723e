"""Helpers of the browser tests: the API token the service runs with, a bounded wait, and a running ``amiflow serve``
child."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOKEN = "browser-test-token"
STOP_TIMEOUT_S = 10.0


def wait_until(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.2) -> Any:
    """``check()``'s first truthy value; AssertionError after ``timeout`` s (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(every)


class Serve:
    """A running ``amiflow serve`` child: its API URL and output."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path) -> None:
        self.proc = proc
        self.out = out

        def api_url() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited {proc.returncode}:\n{self.output()}")
            m = re.search(r"API at (http://\S+)", self.output())
            return m.group(1) if m else None

        self.url: str = wait_until(api_url, timeout=60)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(STOP_TIMEOUT_S + 20)

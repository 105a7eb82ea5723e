"""A real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium) and a real
``amiflow serve`` child process on the test database and broker.

The browser tests skip, saying why, only where Chromium, its driver or Selenium is not installed; ``make test``
installs them (the ``browser`` target: ``apt-get install chromium chromium-driver``; Selenium is in the test extra).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import STOP_TIMEOUT_S, TOKEN, Serve


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium driven through chromedriver; its console log is kept (``get_log("browser")``)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        pytest.skip("chromium and chromium-driver are not installed (make test installs them from Debian's packages)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,1600"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path, log_output=str(tmp_path / "driver.log")))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def serve(tmp_path: Path, db_url: str, mqtt_url: str, topic_prefix: str) -> Iterator[Callable[..., Serve]]:
    """Starts ``amiflow serve ARGS`` on the test database and broker, a free port and the token :data:`TOKEN`."""
    children: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> Serve:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMIFLOW_")}
        env.update(
            AMIFLOW_DATABASE_URL=db_url,
            AMIFLOW_MQTT_URL=mqtt_url,
            AMIFLOW_MQTT_TOPIC_PREFIX=topic_prefix,
            AMIFLOW_MQTT_CLIENT_ID=f"browser-{topic_prefix.rsplit('/', 1)[-1]}",
            AMIFLOW_HTTP_HOST="127.0.0.1",
            AMIFLOW_HTTP_PORT="0",
            AMIFLOW_DATA_DIR=str(tmp_path / "data"),
            AMIFLOW_API_TOKEN=TOKEN,
        )
        out = tmp_path / f"serve-{len(children)}.log"
        cmd = [sys.executable, "-m", "amiflow_app", "-v", "serve", "--stop-timeout", str(STOP_TIMEOUT_S), *args]
        proc = subprocess.Popen(cmd, env=env, stdout=out.open("wb"), stderr=subprocess.STDOUT)
        children.append(proc)
        return Serve(proc, out)

    yield start
    for proc in children:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

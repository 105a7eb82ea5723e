"""``amiflow demo --quick --serve``: after the demo it prints the dashboard's URL and a token of the run, serves the
dashboard on the demo's data (in Chromium too, where installed) until Ctrl-C, and then exits 0."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.harness import wait_until

pytestmark = pytest.mark.timeout(300)


def test_demo_serves_its_dashboard_until_signalled(
    db_url: str, mqtt_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    out = tmp_path / "demo-out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMIFLOW_")}
    env.update(AMIFLOW_DATABASE_URL=db_url, AMIFLOW_MQTT_URL=mqtt_url, AMIFLOW_HTTP_HOST="127.0.0.1",
               AMIFLOW_HTTP_PORT="0", AMIFLOW_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")  # fmt: skip
    log = tmp_path / "demo.log"
    cmd = [sys.executable, "-m", "amiflow_app", "demo", "--quick", "--meters", "20", "--out", str(out), "--serve"]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:

        def announced() -> re.Match[str] | None:
            if proc.poll() is not None:
                raise AssertionError(f"the demo exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            return re.search(r"dashboard is at (http://\S+)/dashboard; log in with the token (\S+) ", log.read_text())

        found = wait_until(announced, timeout=240, every=0.5)
        url, token = found.group(1), found.group(2)
        summary = json.loads((out / "summary.json").read_text())
        assert httpx.get(url + "/dashboard/figures", timeout=30).status_code == 401  # never open
        figures: dict[str, Any] = httpx.get(
            url + "/dashboard/figures", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ).json()
        assert figures["bills"]["issued"] == summary["bills_issued"] > 0
        assert [m["amount"] for m in figures["bills"]["totals"]] == [summary["bills_total"]["USD"]]
        assert figures["quarantine"]["total"] > 0  # the demo's faulty messages
        if _have_chromium():  # the page too, where a browser is installed (the HTTP checks above run everywhere)
            _look_in_chromium(request, url, token, summary["bills_issued"])
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:  # generous: the machine is shared; a stop that hangs fails with the demo's log, not a bare timeout
            code = proc.wait(120)
        except subprocess.TimeoutExpired:
            pytest.fail("the demo did not stop within 120 s of Ctrl-C:\n" + log.read_text(errors="replace")[-3000:])
        assert code == 0, log.read_text(errors="replace")[-3000:]
        assert "amiflow demo: stopped serving" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _have_chromium() -> bool:
    import importlib.util
    import shutil

    return bool(shutil.which("chromium") and shutil.which("chromedriver") and importlib.util.find_spec("selenium"))


def _look_in_chromium(request: pytest.FixtureRequest, url: str, token: str, bills: int) -> None:
    from selenium.webdriver.common.by import By

    chrome = request.getfixturevalue("chrome")
    chrome.get(url + "/dashboard")
    field = chrome.find_element(By.ID, "token")
    field.send_keys(token)
    field.submit()

    def shown() -> bool:
        found = chrome.find_elements(By.CSS_SELECTOR, '[data-figure="bills-issued"]')
        return bool(found) and found[0].text == str(bills)

    wait_until(shown, timeout=60)

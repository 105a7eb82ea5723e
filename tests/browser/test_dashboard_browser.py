"""The operations dashboard in a real headless Chromium against a real ``amiflow serve`` (ingest and the API) on the
test database and broker: log in, the page fills in, a reading published over MQTT moves "readings per minute", a
payment posted through the API moves the arrears, the page never logs a script or policy error, and the service
stops cleanly (exit 0 within its bound) while the page holds its WebSocket open."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg

from amiflow.db.registry import MeterRecord, add_meter
from billing_bridge.payments import BalanceIn, record_balance
from billing_bridge.policy import load_ruleset
from ingest.testing import publish, readings_payload
from tests.browser.harness import TOKEN, wait_until

WAIT_S = 60.0  # generous: a bound against hanging, never a measurement


def _text(driver: Any, name: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, f'[data-figure="{name}"]').text)


def _state(driver: Any) -> str:
    return str(driver.find_element("id", "connection").get_attribute("data-state"))


def _log_in(driver: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/dashboard")
    field = driver.find_element(By.ID, "token")
    assert driver.find_element(By.CSS_SELECTOR, 'label[for="token"]').text  # the field has a visible label
    field.send_keys(TOKEN)
    field.submit()
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, '[data-figure="readings-per-minute"]'), WAIT_S)


def _overdue_statement(conn: psycopg.Connection[Any]) -> None:
    """Account S1 owes 250.00, due 45 days ago (the 31-60 band)."""
    today = datetime.now(UTC).astimezone(ZoneInfo(load_ruleset("us_tx").timezone)).date()
    now = datetime.now(UTC)
    statement = BalanceIn(account="S1", balance="250.00", currency="USD", as_of=now - timedelta(days=50),
                          due_date=today - timedelta(days=45))  # fmt: skip
    record_balance(conn, statement, "api")


def test_live_dashboard_in_chromium(
    chrome: Any, serve: Any, db_conn: psycopg.Connection[Any], mqtt_url: str, topic_prefix: str
) -> None:
    from selenium.webdriver.common.by import By

    add_meter(db_conn, MeterRecord("BR1", "mqtt", account="S1"))
    _overdue_statement(db_conn)
    s = serve("--only", "ingest,api")
    _log_in(chrome, s.url)
    wait_until(lambda: _state(chrome) == "live" and _text(chrome, "arrears-total") == "USD 250.00", WAIT_S)
    assert chrome.title == "amiflow operations"
    assert [h.text for h in chrome.find_elements(By.TAG_NAME, "h2")] == [
        "Readings per minute", "Quarantine", "Meters silent", "Bills issued", "Payments today", "Arrears by age",
        "Disconnects"]  # fmt: skip
    assert _text(chrome, "readings-per-minute") == "0"
    assert _text(chrome, "meters-silent") == "1"  # BR1 was never heard from
    band = chrome.find_element(By.CSS_SELECTOR, '[data-list="arrears-bands"] tr:nth-child(2)')
    assert band.text.split() == ["USD", "31-60", "250.00", "1"]

    # a reading over MQTT: ingest stores it and the page shows it without a reload
    marker = chrome.execute_script("return window.performance.timeOrigin")
    base = int(time.time()) // 900 * 900 - 3 * 900
    publish(mqtt_url, [(f"{topic_prefix}/BR1/readings", readings_payload("BR1", base, 4))])
    wait_until(lambda: _text(chrome, "readings-per-minute") == "4", WAIT_S)
    wait_until(lambda: _text(chrome, "meters-silent") == "0", WAIT_S)

    # a payment through the API moves the arrears
    body = {"payment_id": "P-browser-1", "account": "S1", "amount": "100.00", "currency": "USD",
            "paid_at": datetime.now(UTC).isoformat()}  # fmt: skip
    r = httpx.post(s.url + "/billing/v1/payments", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201, r.text
    wait_until(lambda: _text(chrome, "arrears-total") == "USD 150.00", WAIT_S)
    assert _text(chrome, "payments-today") == "1" and _text(chrome, "payments-total") == "USD 100.00"
    assert chrome.execute_script("return window.performance.timeOrigin") == marker  # the same page: no reload

    # no script error and no Content-Security-Policy violation (the login page's 401 is a "network" entry)
    errors = [e for e in chrome.get_log("browser") if e["level"] == "SEVERE" and e["source"] != "network"]
    assert errors == []

    # the service stops cleanly with the page's WebSocket open, and the page says it lost the connection
    assert s.terminate() == 0, s.output()
    wait_until(lambda: _state(chrome) == "down", WAIT_S)
    assert "reconnecting" in chrome.find_element(By.ID, "connection").text


def test_the_page_asks_for_the_token_and_refuses_a_wrong_one(chrome: Any, serve: Any) -> None:
    from selenium.webdriver.common.by import By

    s = serve("--only", "api")
    chrome.get(s.url + "/dashboard")
    field = chrome.find_element(By.ID, "token")
    field.send_keys("not-the-token")
    field.submit()
    alert = wait_until(lambda: chrome.find_elements(By.CSS_SELECTOR, '[role="alert"]'), WAIT_S)
    assert "not the API token" in alert[0].text
    assert chrome.find_elements(By.CSS_SELECTOR, "[data-figure]") == []
    assert chrome.get_cookies() == []

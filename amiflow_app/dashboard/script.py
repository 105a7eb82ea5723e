"""The dashboard's browser script (served as ``/dashboard/dashboard.js``; no build step, no library).

It opens the WebSocket ``/dashboard/events`` (the session cookie goes with it), renders each figures message with
``textContent`` (never as HTML), says in the status line whether it is live, and reconnects with a doubling delay
(1 s to 30 s) when the connection drops, for example while ``amiflow serve`` restarts. Close code 4401 means the
session ended: it asks the operator to log in again instead of retrying.
"""

from __future__ import annotations

__all__ = ["SCRIPT"]

SCRIPT = r""""use strict";
(() => {
  const num = new Intl.NumberFormat();
  const fig = (name) => document.querySelector(`[data-figure="${name}"]`);
  const status = document.getElementById("connection");

  function set(name, text, attention) {
    const e = fig(name);
    if (!e) return;
    if (e.textContent !== text) e.textContent = text;
    e.classList.toggle("attention", Boolean(attention));
  }
  function setStatus(state, text) {
    if (status.dataset.state === state && status.textContent === text) return;
    status.dataset.state = state;
    status.textContent = text;
  }
  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }
  function rows(name, items, columns, empty) {
    const body = document.querySelector(`[data-list="${name}"]`);
    const out = document.createDocumentFragment();
    for (const item of items) {
      const tr = document.createElement("tr");
      for (const c of columns(item)) tr.append(typeof c === "string" ? cell(c) : c);
      out.append(tr);
    }
    if (!items.length) {
      const tr = document.createElement("tr");
      const td = cell(empty, "empty");
      td.colSpan = body.closest("table").querySelectorAll("thead th").length;
      tr.append(td);
      out.append(tr);
    }
    body.replaceChildren(out);
  }
  const count = (n) => cell(num.format(n), "num");
  const digits = (s) => {
    const [whole, cents] = s.split(".");
    return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (cents === undefined ? "" : "." + cents);
  };
  const money = (m) => `${m.currency}\u00a0${digits(m.amount)}`;  // kept on one line
  const monies = (list) => (list.length ? list.map(money).join(" \u00b7 ") : "none");
  const plural = (n, word) => `${num.format(n)} ${word}${n === 1 ? "" : "s"}`;
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "never");
  const month = (iso) => new Date(iso + "T00:00:00Z").toLocaleDateString(undefined,
    { year: "numeric", month: "long", timeZone: "UTC" });

  function readings(r) {
    set("readings-per-minute", num.format(r.last_minute));
    const label = (i) => (i === 0 ? "last 60 s" : `${i}\u2013${i + 1}`);
    rows("readings-minutes", r.per_minute.map((n, i) => [i, n]), ([i, n]) => [label(i), count(n)], "");
  }
  function quarantine(q) {
    set("quarantine-24h", num.format(q.last_24h), q.last_24h > 0);
    set("quarantine-total", num.format(q.total));
    rows("quarantine-reasons", q.by_reason, (r) => [r.reason, count(r.last_24h), count(r.total), when(r.last_at)],
      "nothing quarantined");
  }
  function silent(s) {
    set("meters-silent", num.format(s.count), s.count > 0);
    const minutes = Math.round((s.intervals * s.interval_s) / 60);
    set("silent-rule", `of ${num.format(s.active)} active meters: no reading for ${s.intervals} intervals` +
      ` (${minutes} min); ${num.format(s.never_seen)} never heard from`);
    rows("silent-meters", s.meters, (m) => [m.meter, m.protocol, when(m.last_seen_at)], "every meter is reporting");
  }
  function bills(b) {
    set("bills-issued", num.format(b.issued));
    set("bills-month", b.month ? `in ${month(b.month)}` : "no bills issued yet");
    set("bills-total", monies(b.totals));
    set("bills-today", num.format(b.issued_today));
    const o = b.outbox;
    set("bills-outbox", `${num.format(o.pending)} / ${num.format(o.delivered)} / ${num.format(o.rejected)}` +
      (o.rejected > 0 ? " (rejected: see amiflow bridge)" : ""), o.rejected > 0);
  }
  function payments(p) {
    set("payments-today", num.format(p.count));
    set("payments-day", `received on ${p.day}`);
    set("payments-total", monies(p.totals));
  }
  function arrears(a) {
    const totals = a.by_currency.map((c) => ({ currency: c.currency, amount: c.total }));
    set("arrears-total", monies(totals), totals.length > 0);
    const accounts = a.by_currency.reduce((n, c) => n + c.accounts, 0);
    set("arrears-accounts", `${plural(accounts, "account")} overdue on ${a.as_of}`);
    const bands = a.by_currency.flatMap((c) => c.bands.map((b) => [c.currency, b]));
    rows("arrears-bands", bands, ([currency, b]) => [currency, b.band === ">90" ? "over 90" : b.band,
      cell(digits(b.amount), "num"), count(b.accounts)], "no account is overdue");
  }
  function disconnects(d) {
    set("disconnects-pending", num.format(d.pending));
    set("disconnects-blocked", num.format(d.blocked));
    set("disconnects-escalated", num.format(d.escalated), d.escalated > 0);
    rows("disconnect-commands", d.commands, (c) => [c.meter, c.account || "\u2013", c.state, count(c.attempts),
      when(c.created_at), c.last_error || ""], "no disconnect waiting");
    rows("disconnect-blocked", d.decisions, (b) => [b.account, b.meter || "all meters", b.rules.join(", "),
      b.detail.join("; "), when(b.decided_at)], "no disconnect blocked");
  }
  function render(m) {
    readings(m.readings);
    quarantine(m.quarantine);
    silent(m.silent);
    bills(m.bills);
    payments(m.payments);
    arrears(m.arrears);
    disconnects(m.disconnects);
    const updated = document.getElementById("updated");
    updated.dateTime = m.at;
    updated.textContent = new Date(m.at).toLocaleTimeString();
  }

  let delay = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/dashboard/events");
    socket.onopen = () => {
      delay = 1000;
      setStatus("live", "Live");
    };
    socket.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.type === "figures") {
        render(m);
        setStatus("live", "Live");
      } else if (m.type === "error") {
        setStatus("error", `Figures unavailable (${m.detail}); retrying`);
      }
    };
    socket.onclose = (event) => {
      if (event.code === 4401) {
        setStatus("down", "Session ended: reload the page to log in again");
        return;
      }
      setStatus("down", `Disconnected; reconnecting in ${Math.round(delay / 1000)} s`);
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
"""

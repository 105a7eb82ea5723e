"""The dashboard's HTML documents (the page and the login form) and their style sheet.

Plain HTML with landmarks, headings, tables with captions and header cells, a status line for the connection; the
figures are filled in by :mod:`amiflow_app.dashboard.script` (``textContent`` only: nothing from the database is
ever parsed as HTML). Colours pass WCAG AA contrast in light and dark mode, and no state is told by colour alone.
"""

from __future__ import annotations

from html import escape

__all__ = ["STYLE", "login_page", "page"]

_HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/dashboard/dashboard.css">
{script}</head>
"""

_PAGE = """<body>
<a class="skip" href="#figures">Skip to the figures</a>
<header>
  <h1>amiflow operations</h1>
  <p id="connection" role="status" data-state="connecting">Connecting&hellip;</p>
  <p>Figures as of <time id="updated">&ndash;</time></p>
  {logout}
</header>
<noscript><p class="note">The live figures need JavaScript; the same figures are at
  <a href="/dashboard/figures">/dashboard/figures</a> as JSON.</p></noscript>
<main id="figures" class="grid">
  <section aria-labelledby="h-readings">
    <h2 id="h-readings">Readings per minute</h2>
    <p class="big"><span data-figure="readings-per-minute">&ndash;</span></p>
    <p class="hint">stored in the last 60 seconds</p>
    <table class="minutes"><caption>Readings stored per minute, newest first</caption>
      <thead><tr><th scope="col">minutes ago</th><th scope="col" class="num">readings</th></tr></thead>
      <tbody data-list="readings-minutes"></tbody></table>
  </section>
  <section aria-labelledby="h-quarantine">
    <h2 id="h-quarantine">Quarantine</h2>
    <p class="big"><span data-figure="quarantine-24h">&ndash;</span></p>
    <p class="hint">messages quarantined in the last 24 hours
      (<span data-figure="quarantine-total">&ndash;</span> in all)</p>
    <table><caption>Quarantined messages by reason</caption>
      <thead><tr><th scope="col">reason</th><th scope="col" class="num">24&nbsp;h</th>
        <th scope="col" class="num">all</th><th scope="col">last</th></tr></thead>
      <tbody data-list="quarantine-reasons"></tbody></table>
  </section>
  <section aria-labelledby="h-silent">
    <h2 id="h-silent">Meters silent</h2>
    <p class="big"><span data-figure="meters-silent">&ndash;</span></p>
    <p class="hint" data-figure="silent-rule">&ndash;</p>
    <table><caption>Silent meters, the longest silent first</caption>
      <thead><tr><th scope="col">meter</th><th scope="col">protocol</th><th scope="col">last heard</th></tr></thead>
      <tbody data-list="silent-meters"></tbody></table>
  </section>
  <section aria-labelledby="h-bills">
    <h2 id="h-bills">Bills issued</h2>
    <p class="big"><span data-figure="bills-issued">&ndash;</span></p>
    <p class="hint" data-figure="bills-month">&ndash;</p>
    <dl>
      <dt>Billed</dt><dd data-figure="bills-total">&ndash;</dd>
      <dt>Issued today</dt><dd data-figure="bills-today">&ndash;</dd>
      <dt>To billing: pending / delivered / rejected</dt><dd data-figure="bills-outbox">&ndash;</dd>
    </dl>
  </section>
  <section aria-labelledby="h-payments">
    <h2 id="h-payments">Payments today</h2>
    <p class="big"><span data-figure="payments-today">&ndash;</span></p>
    <p class="hint" data-figure="payments-day">&ndash;</p>
    <dl><dt>Received</dt><dd data-figure="payments-total">&ndash;</dd></dl>
  </section>
  <section aria-labelledby="h-arrears" class="wide">
    <h2 id="h-arrears">Arrears by age</h2>
    <p class="big"><span data-figure="arrears-total">&ndash;</span></p>
    <p class="hint" data-figure="arrears-accounts">&ndash;</p>
    <table><caption>Overdue amounts by days past due (each debt aged by its due date; accounts by their
      oldest overdue debt)</caption>
      <thead><tr><th scope="col">currency</th><th scope="col">days past due</th><th scope="col" class="num">amount</th>
        <th scope="col" class="num">accounts</th></tr></thead>
      <tbody data-list="arrears-bands"></tbody></table>
  </section>
  <section aria-labelledby="h-disconnects" class="wide">
    <h2 id="h-disconnects">Disconnects</h2>
    <dl class="pair">
      <dt>Pending</dt><dd class="big" data-figure="disconnects-pending">&ndash;</dd>
      <dt>Blocked by the policy</dt><dd class="big" data-figure="disconnects-blocked">&ndash;</dd>
      <dt>Escalated (need an operator)</dt><dd class="big" data-figure="disconnects-escalated">&ndash;</dd>
    </dl>
    <table><caption>Disconnect commands not yet done</caption>
      <thead><tr><th scope="col">meter</th><th scope="col">account</th><th scope="col">state</th>
        <th scope="col" class="num">attempts</th><th scope="col">since</th><th scope="col">last error</th></tr></thead>
      <tbody data-list="disconnect-commands"></tbody></table>
    <table><caption>Accounts in arrears whose disconnect the policy blocked, with the rule</caption>
      <thead><tr><th scope="col">account</th><th scope="col">meter</th><th scope="col">rule</th>
        <th scope="col">why</th><th scope="col">decided</th></tr></thead>
      <tbody data-list="disconnect-blocked"></tbody></table>
  </section>
</main>
</body>
</html>
"""

_LOGOUT = """<form method="post" action="/dashboard/logout"><button type="submit">Log out</button></form>"""

_LOGIN = """<body>
<main class="login">
  <h1>amiflow operations</h1>
  {message}{form}
</main>
</body>
</html>
"""

_FORM = """
  <form method="post" action="/dashboard/login">
    <label for="token">API token (AMIFLOW_API_TOKEN)</label>
    <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
    <button type="submit">Log in</button>
  </form>"""


def page(*, logout: bool) -> str:
    """The dashboard page; ``logout`` adds the log-out button (not with public reads: there is no session)."""
    head = _HEAD.format(title="amiflow operations", script='<script src="/dashboard/dashboard.js" defer></script>\n')
    return head + _PAGE.format(logout=_LOGOUT if logout else "")


def login_page(message: str | None = None, *, form: bool = True) -> str:
    """The login form, with ``message`` (an error, read out at once) above it; without ``form`` the message only."""
    text = f'<p class="note" role="alert">{escape(message)}</p>' if message else ""
    body = _LOGIN.format(message=text, form=_FORM if form else "")
    return _HEAD.format(title="amiflow operations: log in", script="") + body


STYLE = """:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --card: #ffffff; --text: #1b1f24; --muted: #4d5561; --line: #d0d5dc;
  --accent: #0b5cad; --warn-bg: #fff3d6; --warn: #6b4500; --bad-bg: #fde2e1; --bad: #8a1c16;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #14171b; --card: #1d2126; --text: #e8eaed; --muted: #b1b8c2; --line: #3a4049;
          --accent: #8cc4ff; --warn-bg: #3d3000; --warn: #ffd98a; --bad-bg: #4a1512; --bad: #ffb4ae; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       background: var(--bg); color: var(--text); }
a { color: var(--accent); }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: 1rem; background: var(--card); padding: .5rem; z-index: 1; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: baseline; padding: 1rem 1.5rem;
         border-bottom: 1px solid var(--line); background: var(--card); }
header h1 { margin: 0; font-size: 1.4rem; }
header p, header form { margin: 0; }
#connection::before { content: "\\25CF\\00A0"; }
#connection[data-state="live"] { color: #1d7a36; }
#connection[data-state="down"], #connection[data-state="error"] { color: var(--bad); font-weight: 600; }
@media (prefers-color-scheme: dark) { #connection[data-state="live"] { color: #7fdc98; } }
.grid { display: grid; gap: 1rem; padding: 1rem 1.5rem;
        grid-template-columns: repeat(auto-fill, minmax(min(100%, 20rem), 1fr)); }
section { background: var(--card); border: 1px solid var(--line); border-radius: .5rem; padding: 1rem; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { margin: 0 0 .25rem; font-size: 1.05rem; }
.big { font-size: 2.2rem; font-weight: 700; margin: .25rem 0; font-variant-numeric: tabular-nums; }
.hint { color: var(--muted); margin: 0 0 .75rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); padding-bottom: .25rem; }
th, td { text-align: left; padding: .25rem .75rem .25rem 0; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; }
.minutes { max-width: 16rem; }
dl { display: grid; grid-template-columns: auto 1fr; gap: .25rem 1rem; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
dl.pair dd.big { font-size: 1.6rem; margin: 0; }
.attention { background: var(--warn-bg); color: var(--warn); padding: 0 .25rem; border-radius: .25rem; }
.note { background: var(--warn-bg); color: var(--warn); padding: .5rem 1rem; border-radius: .25rem; }
.empty { color: var(--muted); font-style: italic; }
button, input { font: inherit; padding: .4rem .8rem; }
button { cursor: pointer; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.login { max-width: 26rem; margin: 4rem auto; padding: 1.5rem; background: var(--card); border-radius: .5rem;
         border: 1px solid var(--line); }
.login form { display: grid; gap: .5rem; }
"""

"""Alerts: tell someone when a spreadsheet's events are parked or its lag passes a threshold.

Optional (``[alerts]`` in the settings): a JSON webhook (``{"text": ...}``, which Slack's and Google
Chat's incoming webhooks take as it is, and Discord's at its ``/slack`` URL) and/or e-mail over SMTP.
``serve`` runs :class:`Alerter` in a thread: every ``check_seconds`` it reads the store (never the
worker's memory), finds each mapped spreadsheet's parked events and lag, and sends what is due.

Rate limits: one alert per spreadsheet and condition, repeated at most every ``repeat_minutes`` while the
condition lasts; once it clears, the next occurrence is sent at once. What was sent when is kept in the
journal (``alerts`` table), so a restart does not send everything again. A sender that fails is logged
and tried again at the next check.
"""

from __future__ import annotations

import logging
import smtplib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final

import httpx

from connector.console.queries import Tally, oldest_pending, status_counts
from connector.journal import connect_journal
from connector.mapping_watch import MappingWatcher
from connector.settings import Settings, SmtpSettings
from connector.store import open_work_store
from connector.store.protocols import Figures
from connector.store.records import now_ms
from connector.store.sqlite_schema import transaction
from connector.sync.mapping import SheetMapping
from connector.sync.routing import Router

__all__ = ["Alert", "Alerter", "due_alerts", "find_alerts", "send_email", "send_webhook"]

log = logging.getLogger(__name__)

ALERTS_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS alerts (
    key     TEXT PRIMARY KEY,
    sent_ms INTEGER NOT NULL,
    text    TEXT NOT NULL
);
"""
SEND_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True)
class Alert:
    """A condition worth telling someone about; ``key`` identifies it for rate limiting."""

    key: str
    subject: str
    text: str


def find_alerts(
    store: Figures,
    mapping: SheetMapping,
    now: int,
    lag_threshold_ms: int,
    tally: Tally | None = None,
) -> list[Alert]:
    """Every mapped spreadsheet with parked events, or whose oldest pending event waits too long;
    ``tally``, kept by the caller, spares counting again the events counted at the last check."""
    counts = status_counts(store, now, tally)
    oldest = oldest_pending(store)
    latest_error = {  # company -> (id, error) of its newest parked event
        event.company_id: (event.id, event.error) for event in store.newest_failed_by_company()
    }
    by_sheet = Router.from_mapping(mapping).spreadsheets()
    alerts = []
    for spreadsheet_id, mapped in sorted(by_sheet.items()):
        companies = [company.company_id for company in mapped]
        failed = sum(counts.get(c, {}).get("failed", 0) for c in companies)
        if failed:
            error = max(latest_error[c] for c in companies if c in latest_error)[1]
            alerts.append(
                Alert(
                    f"parked:{spreadsheet_id}",
                    f"doopage-sheets: {failed} events parked for spreadsheet {spreadsheet_id}",
                    f"Spreadsheet {spreadsheet_id}: {failed} events are parked and will not be written until "
                    f"the cause is fixed and they are retried (console, or `doopage-sheets failed retry`). "
                    f"Latest error: {error}",
                )
            )
        waiting = [oldest[c] for c in companies if c in oldest]
        if waiting and now - min(waiting) > lag_threshold_ms:
            minutes = (now - min(waiting)) / 60_000
            alerts.append(
                Alert(
                    f"lag:{spreadsheet_id}",
                    f"doopage-sheets: spreadsheet {spreadsheet_id} is {minutes:.0f} min behind",
                    f"Spreadsheet {spreadsheet_id}: the oldest event waiting to be written arrived "
                    f"{minutes:.1f} minutes ago (threshold {lag_threshold_ms / 60_000:.0f} min). "
                    "Google may be rate limiting or failing; see the console.",
                )
            )
    return alerts


def due_alerts(journal: sqlite3.Connection, alerts: Sequence[Alert], now: int, repeat_ms: int) -> list[Alert]:
    """The alerts to send now: new ones, and lasting ones last sent ``repeat_ms`` ago or more. Alerts
    no longer present are forgotten, so that their next occurrence is sent at once."""
    journal.executescript(ALERTS_SCHEMA)
    sent = dict(journal.execute("SELECT key, sent_ms FROM alerts").fetchall())
    current = {alert.key for alert in alerts}
    with transaction(journal):
        for key in set(sent) - current:
            journal.execute("DELETE FROM alerts WHERE key = ?", (key,))
    return [alert for alert in alerts if alert.key not in sent or now - sent[alert.key] >= repeat_ms]


def mark_sent(journal: sqlite3.Connection, alert: Alert, now: int) -> None:
    """Remember that an alert went out."""
    with transaction(journal):
        journal.execute(
            "INSERT INTO alerts (key, sent_ms, text) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " sent_ms = excluded.sent_ms, text = excluded.text",
            (alert.key, now, alert.text),
        )


def send_webhook(url: str, alert: Alert) -> None:
    """POST the alert as ``{"text": ...}``; httpx.HTTPError when it is not accepted."""
    answer = httpx.post(url, json={"text": f"{alert.subject}\n{alert.text}"}, timeout=SEND_TIMEOUT_S)
    answer.raise_for_status()


def send_email(smtp: SmtpSettings, alert: Alert) -> None:
    """Send the alert by e-mail; smtplib.SMTPException or OSError when it cannot be."""
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = smtp.sender
    message["To"] = ", ".join(smtp.to)
    message.set_content(alert.text)
    with smtplib.SMTP(smtp.host, smtp.port, timeout=SEND_TIMEOUT_S) as client:
        if smtp.starttls:
            client.starttls()
        if smtp.username is not None and smtp.password is not None:
            client.login(smtp.username, smtp.password.reveal())
        client.send_message(message)


class Alerter:
    """Checks the data directory every ``check_seconds`` and sends the alerts that are due."""

    def __init__(self, settings: Settings, clock: Callable[[], int] = now_ms) -> None:
        self.settings = settings
        self.config = settings.alerts
        self.watcher = MappingWatcher(settings)
        self._clock = clock
        self._tally = Tally()  # events per company, counted once (see status_counts)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def senders(self) -> list[tuple[str, Callable[[Alert], None]]]:
        """(name, send) of every configured channel."""
        channels: list[tuple[str, Callable[[Alert], None]]] = []
        if self.config.webhook_url is not None:
            url = self.config.webhook_url.reveal()
            channels.append(("webhook", lambda alert: send_webhook(url, alert)))
        if self.config.smtp is not None:
            smtp = self.config.smtp
            channels.append(("e-mail", lambda alert: send_email(smtp, alert)))
        return channels

    def check_once(self) -> list[Alert]:
        """One check: what was sent (on every channel that took it)."""
        self.watcher.check()
        now = self._clock()
        store = open_work_store(self.settings)
        journal = connect_journal(self.settings.data_dir)
        try:
            lag_ms = self.config.lag_minutes * 60_000
            found = find_alerts(store, self.watcher.mapping, now, lag_ms, self._tally)
            sent = []
            for alert in due_alerts(journal, found, now, self.config.repeat_minutes * 60_000):
                delivered = False
                for name, send in self.senders():
                    try:
                        send(alert)
                        delivered = True
                    except (httpx.HTTPError, smtplib.SMTPException, OSError) as exc:
                        log.warning(
                            "alert not sent by %s (tried again in %d s): %s",
                            name,
                            self.config.check_seconds,
                            exc,
                        )
                if delivered:
                    mark_sent(journal, alert, now)
                    log.info("alert sent: %s", alert.subject)
                    sent.append(alert)
            return sent
        finally:
            store.close()
            journal.close()

    def start(self) -> None:
        """Check in a thread of its own until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop checking."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.config.check_seconds):
            try:
                self.check_once()
            except Exception:
                log.exception("alert check failed; trying again in %d s", self.config.check_seconds)

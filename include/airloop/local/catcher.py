"""A local alert catcher: a real SMTP server and a Slack-like webhook endpoint that keep what they receive.

The local stack runs it in its own process and points the alert connections at it; tests run it in-process too, and
``python -m airloop.local.catcher --dir DIR`` runs it alone. Every message is written to a file, so another process can read what arrived:
``<dir>/email/<timestamp>-<n>.eml`` and ``<dir>/slack/<timestamp>-<n>.json``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import json
import logging
import os
import signal
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from airloop.core.files import write_bytes
from airloop.vendor.aiosmtpd import FreePortController

log = logging.getLogger(__name__)

#: A token in Slack's format; the catcher accepts any path, so it only makes the URL look like a real webhook.
FAKE_WEBHOOK_TOKEN = "T00000000/B00000000/airloopcatcher"


class AlertCatcher:
    """Receives e-mail over SMTP and webhook POSTs over HTTP, and stores each one as a file under ``directory``.

    Ports 0 (the default) bind free ports; read the real ones from :attr:`smtp_port` and :attr:`http_port`.
    Use as a context manager, or call :meth:`start` and :meth:`stop`. A stopped catcher starts again on the ports
    it had, so the connections it handed out stay valid (an outage of the alert channels, then their return).
    """

    def __init__(
        self, directory: Path, host: str = "127.0.0.1", smtp_port: int = 0, http_port: int = 0
    ) -> None:
        self.directory = Path(directory)
        self.host = host
        self._requested_smtp_port = smtp_port
        self._requested_http_port = http_port
        self._counter = itertools.count(1)
        self._smtp: FreePortController | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def email_dir(self) -> Path:
        return self.directory / "email"

    @property
    def slack_dir(self) -> Path:
        return self.directory / "slack"

    @property
    def smtp_port(self) -> int:
        """The port the SMTP server listens on."""
        if self._smtp is None:
            raise RuntimeError("the alert catcher is not running")
        return self._smtp.port

    @property
    def http_port(self) -> int:
        """The port the webhook server listens on."""
        if self._http is None:
            raise RuntimeError("the alert catcher is not running")
        return self._http.server_address[1]

    def start(self) -> AlertCatcher:
        """Bind both servers and serve in background threads."""
        if self._smtp is not None:
            raise RuntimeError("the alert catcher is already running")
        self.email_dir.mkdir(parents=True, exist_ok=True)
        self.slack_dir.mkdir(parents=True, exist_ok=True)
        smtp = FreePortController(_MailHandler(self), hostname=self.host, port=self._requested_smtp_port)
        smtp.start()
        try:
            http = ThreadingHTTPServer((self.host, self._requested_http_port), _webhook_handler(self))
        except OSError:
            smtp.stop()
            raise
        http.daemon_threads = True
        self._smtp, self._http = smtp, http
        # A short poll interval: stop() waits for the serving loop to notice the shutdown request.
        self._http_thread = threading.Thread(
            target=http.serve_forever, kwargs={"poll_interval": 0.05}, name="alert-catcher-http", daemon=True
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        """Stop both servers; the stored messages stay, and the ports are kept for the next :meth:`start`."""
        if self._smtp is not None and self._http is not None:
            self._requested_smtp_port, self._requested_http_port = self.smtp_port, self.http_port
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join()
            self._http_thread = None
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None

    def __enter__(self) -> AlertCatcher:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def emails(self) -> list[EmailMessage]:
        """Every e-mail received so far (by this or any catcher on the same directory), oldest first."""
        return [
            email.message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=email.policy.default)
            for path in sorted(self.email_dir.glob("*.eml"))
        ]

    def webhooks(self) -> list[dict[str, Any]]:
        """Every webhook body received so far, oldest first."""
        return [json.loads(path.read_text()) for path in sorted(self.slack_dir.glob("*.json"))]

    def smtp_connection(self, from_email: str) -> str:
        """An SMTP connection to this catcher, as JSON for an ``AIRFLOW_CONN_<ID>`` environment variable."""
        return json.dumps(
            {
                "conn_type": "smtp",
                "host": self.host,
                "port": self.smtp_port,
                # A local plain server: no STARTTLS, no SMTPS; the sender comes from the connection.
                "extra": {"from_email": from_email, "disable_tls": True, "disable_ssl": True, "timeout": 10},
            }
        )

    def slack_connection(self) -> str:
        """A Slack incoming-webhook connection to this catcher, as JSON for ``AIRFLOW_CONN_<ID>``."""
        # The hook ignores the port field: the URL is schema://host/password, so the port goes in the host.
        return json.dumps(
            {
                "conn_type": "slackwebhook",
                "schema": "http",
                "host": f"{self.host}:{self.http_port}/services",
                "password": FAKE_WEBHOOK_TOKEN,
                "extra": {"timeout": 10},
            }
        )

    def _store(self, folder: Path, suffix: str, data: bytes) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        # Written atomically, so a reader in another process never sees half a message.
        return write_bytes(folder / f"{stamp}-{next(self._counter):06d}{suffix}", data)


class _MailHandler:
    def __init__(self, catcher: AlertCatcher) -> None:
        self._catcher = catcher

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        path = self._catcher._store(self._catcher.email_dir, ".eml", content)
        log.info("e-mail from %s to %s stored in %s", envelope.mail_from, envelope.rcpt_tos, path.name)
        return "250 Message accepted for delivery"


def _webhook_handler(catcher: AlertCatcher) -> type[BaseHTTPRequestHandler]:
    class WebhookHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                json.loads(body)
            except ValueError:
                # What Slack answers to a body that is not a JSON message.
                self._answer(400, b"invalid_payload")
                return
            path = catcher._store(catcher.slack_dir, ".json", body)
            log.info("webhook POST stored in %s", path.name)
            self._answer(200, b"ok")

        def _answer(self, status: int, text: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: Any) -> None:
            # Through logging, not the default stderr access log that would interleave with the stack's output.
            log.debug(format, *args)

    return WebhookHandler


def main(argv: list[str] | None = None) -> int:
    """Run the catcher in the foreground until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m airloop.local.catcher", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dir", type=Path, required=True, help="where received messages are stored")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--http-port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiosmtpd logs every SMTP command at INFO; one line per stored message is enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with AlertCatcher(
        args.dir, host=args.host, smtp_port=args.smtp_port, http_port=args.http_port
    ) as catcher:
        log.info(
            "alert catcher (pid %d): SMTP on %s:%d, webhooks on http://%s:%d, storing in %s",
            os.getpid(),
            catcher.host,
            catcher.smtp_port,
            catcher.host,
            catcher.http_port,
            catcher.directory,
        )
        stop.wait()
    log.info("alert catcher stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

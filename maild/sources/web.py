"""The site's request form over HTTP (aiohttp), beside the SMTP/LMTP listeners.

`GET /` serves the form (Russian, `?lang=en` English) with a CSRF token in a hidden field and
a cookie; `POST /requests` (multipart form, or JSON without files) is checked by the pure
rules of `maild.sources.webform`, turned into the mail the client would have written and
put into the spool; `201` (with the ticket number once the worker has opened the ticket,
or `202` when it has not within a few seconds: the number comes by mail) only after the
spool write returned, as SMTP's `250`. Nothing is stored from a refused submission.

aiohttp (aio-libs, as aiosmtpd): a streaming multipart reader, so an upload over the limit is
refused as it arrives (or before, by its Content-Length) and never held whole; and an HTTP
client for the Telegram Bot API in the same library.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from aiohttp import BodyPartReader, web
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock
from maild.compose import template_environment
from maild.config import Config, WebInboundConfig
from maild.sources.webform import (
    CRITICALITIES,
    FIELD_LIMITS,
    FieldError,
    FormLimits,
    RateLimiter,
    Submission,
    UploadedFile,
    check_csrf_token,
    issue_csrf_token,
    submission_to_mail,
    validate_submission,
)
from storage.models import InboundMessage
from storage.spool import SpoolMeta, SpoolWriter
from threading_rules.token import format_token

log = logging.getLogger(__name__)
CSRF_COOKIE = "maild_csrf"
CSRF_MAX_AGE_SECONDS = 4 * 3600
TICKET_WAIT_SECONDS = 10.0
FORM_FIELD_BYTES = 64 * 1024
LABELS: dict[str, dict[str, Any]] = {
    "ru": {
        "title": "Обращение в техническую поддержку Cubisio", "other_language": "English",
        "intro": "Опишите проблему. Чем больше сведений (версия, окружение, шаги, журналы, "
                 "снимки экрана), тем быстрее инженер сможет помочь.",
        "fix": "Исправьте, пожалуйста:", "submit": "Отправить обращение",
        "trap": "Не заполняйте это поле",
        "registered": "Обращение зарегистрировано под номером",
        "registered_mail": "Подтверждение и список сведений для инженера отправлены на вашу почту; "
                           "отвечайте на это письмо, чтобы дополнить обращение.",
        "queued": "Обращение принято. Номер придёт письмом на указанный адрес.",
        "fields": {"name": "Имя", "email": "Электронная почта", "organization": "Организация",
                   "version": "Версия продукта", "problem": "Описание проблемы",
                   "steps": "Шаги воспроизведения", "environment": "Окружение",
                   "criticality": "Насколько это срочно", "files": "Файлы",
                   "csrf": "Форма", "website": "Форма", "form": "Форма"},
        "hints": {"version": "например, Cubisio 3.2.1", "problem": "текст ошибки, что ожидалось",
                  "steps": "что сделать, чтобы увидеть ошибку",
                  "environment": "ОС, память, СУБД", "files": "журналы, снимки экрана, дампы"},
        "codes": {"missing": "обязательное поле", "too_long": "слишком длинно",
                  "invalid": "неверное значение", "too_many_files": "слишком много файлов",
                  "file_too_large": "файл слишком велик", "too_large": "слишком большой объём",
                  "expired": "страница устарела, отправьте форму ещё раз", "bot": "отклонено",
                  "too_many": "слишком много обращений подряд, повторите позже"},
        "levels": {"low": "низкая", "normal": "обычная", "high": "высокая",
                   "critical": "критическая: работа остановлена"},
    },
    "en": {
        "title": "Cubisio technical support request", "other_language": "Русский",
        "intro": "Describe the problem. The more you tell (version, environment, steps, logs, "
                 "screenshots), the sooner an engineer can help.",
        "fix": "Please correct:", "submit": "Send the request",
        "trap": "Leave this field empty",
        "registered": "Your request is registered as",
        "registered_mail": "The acknowledgement and the checklist for the engineer went to your "
                           "address; reply to that mail to add to the request.",
        "queued": "Your request is received. Its number will reach you by mail.",
        "fields": {"name": "Name", "email": "Email", "organization": "Organisation",
                   "version": "Product version", "problem": "What is wrong",
                   "steps": "Steps to reproduce", "environment": "Environment",
                   "criticality": "How urgent is it", "files": "Files",
                   "csrf": "Form", "website": "Form", "form": "Form"},
        "hints": {"version": "e.g. Cubisio 3.2.1", "problem": "the error text, what you expected",
                  "steps": "what to do to see the error",
                  "environment": "OS, memory, database", "files": "logs, screenshots, dumps"},
        "codes": {"missing": "required", "too_long": "too long", "invalid": "not valid",
                  "too_many_files": "too many files", "file_too_large": "a file is too large",
                  "too_large": "too much in all", "expired": "the page expired, send it again",
                  "bot": "refused", "too_many": "too many requests in a row, try again later"},
        "levels": {"low": "low", "normal": "normal", "high": "high",
                   "critical": "critical: work has stopped"},
    },
}  # fmt: skip


class TooLarge(Exception):
    """The body went past the submission limit while it was read."""


class Refused(Exception):
    """A submission turned away: the HTTP status, the reasons, what to show again."""

    def __init__(
        self,
        status: int,
        errors: list[FieldError],
        fields: dict[str, str] | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(status)
        self.status = status
        self.errors = errors
        self.fields = fields
        self.retry_after = retry_after


class WebIntake:
    """The aiohttp handlers; the decisions are `maild.sources.webform`'s."""

    def __init__(
        self,
        config: Config,
        listener: WebInboundConfig,
        *,
        spool: SpoolWriter,
        sessions: sessionmaker[Session],
        clock: Clock,
        secret: bytes,
        on_spooled: Callable[[], None],
    ) -> None:
        self.config = config
        self.spool = spool
        self.sessions = sessions
        self.clock = clock
        self.secret = secret
        self.on_spooled = on_spooled
        artifacts = config.artifacts
        self.limits = FormLimits(
            min(artifacts.max_attachment_bytes, listener.max_request_bytes),
            min(artifacts.max_message_bytes, listener.max_request_bytes),
        )
        self.proxies = tuple(
            ipaddress.ip_network(n, strict=False) for n in listener.trusted_proxies
        )
        self.per_peer = RateLimiter(listener.per_peer_per_minute, 60.0)
        self.per_email = RateLimiter(listener.per_email_per_hour, 3600.0)

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.limits.max_total_bytes + 1024 * 1024)
        app.router.add_get("/", self.form)
        app.router.add_post("/requests", self.submit)
        return app

    # --- the page ---

    def _language(self, request: web.Request) -> str:
        language = request.query.get("lang", self.config.tickets.language)
        return language if language in LABELS else "ru"

    def _page(self, request: web.Request, status: int = 200, **context: Any) -> web.Response:
        language = self._language(request)
        token = issue_csrf_token(self.secret, self.clock.now(), secrets.token_hex(8))
        values = dict.fromkeys(FIELD_LIMITS, "") | context.pop("values", {})
        html = template_environment().get_template("webform.html.j2").render(
            language=language, t=LABELS[language], csrf=token, values=values,
            criticalities=CRITICALITIES, errors=context.pop("errors", []),
            ticket=context.pop("ticket", None), queued=context.pop("queued", False),
        )  # fmt: skip
        response = web.Response(text=html, content_type="text/html", status=status)
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="Strict", max_age=CSRF_MAX_AGE_SECONDS
        )
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors *"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def form(self, request: web.Request) -> web.Response:
        return self._page(request)

    # --- a submission ---

    async def submit(self, request: web.Request) -> web.Response:
        wants_json = request.content_type == "application/json"
        try:
            submission = await self._screen(request, wants_json)
        except Refused as refusal:
            return self._refuse(
                request, wants_json, refusal.status, refusal.errors,
                fields=refusal.fields, retry_after=refusal.retry_after,
            )  # fmt: skip
        return await self._accept(request, wants_json, submission, self.client_address(request))

    def client_address(self, request: web.Request) -> str:
        """Who is submitting: the peer, or behind a trusted reverse proxy the address the
        proxies say they got the request from (the right-most one not their own); a header
        from anyone else is ignored, or every client could pick its own rate limit."""
        chain = [request.remote or ""]
        forwarded = request.headers.getall("X-Forwarded-For", [])
        hops = [hop.strip() for value in forwarded for hop in value.split(",") if hop.strip()]
        while hops and self._is_proxy(chain[-1]):
            chain.append(hops.pop())
        return chain[-1]

    def _is_proxy(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)

    async def _screen(self, request: web.Request, wants_json: bool) -> Submission:
        """The submission, or `Refused` with the status and every reason."""
        length = request.content_length
        if length is not None and length > self.limits.max_total_bytes:
            raise Refused(413, [FieldError("files", "too_large")])
        if not self.per_peer.allow(self.client_address(request), time.monotonic()):
            raise Refused(429, [], retry_after=60)
        try:
            read = self._read_json if wants_json else self._read_form
            fields, files = await read(request)
        except TooLarge:
            raise Refused(413, [FieldError("files", "too_large")]) from None
        except (ValueError, TypeError, UnicodeDecodeError):
            raise Refused(400, [FieldError("form", "invalid")]) from None
        if not wants_json and not check_csrf_token(
            self.secret, fields.get("csrf", ""), request.cookies.get(CSRF_COOKIE, ""),
            self.clock.now(), CSRF_MAX_AGE_SECONDS,
        ):  # fmt: skip
            raise Refused(403, [FieldError("csrf", "expired")], fields)
        result = validate_submission(fields, files, self.limits)
        if isinstance(result, list):
            raise Refused(400, result, fields)
        if not self.per_email.allow(result.email.lower(), time.monotonic()):
            raise Refused(429, [], retry_after=3600)
        return result

    async def _accept(
        self, request: web.Request, wants_json: bool, submission: Submission, peer: str
    ) -> web.Response:
        """Into the spool, durably, and only then an answer; with the ticket number when
        the worker has it in time."""
        now = self.clock.now()
        domain = self.config.mailbox.address.rpartition("@")[2]
        raw = submission_to_mail(
            submission, support_address=self.config.mailbox.address,
            message_id=f"<web.{secrets.token_hex(12)}@{domain}>", received_at=now,
            language=self._language(request),
        )  # fmt: skip
        meta = SpoolMeta(source="web", received_at=now.isoformat(), peer=peer)
        loop = asyncio.get_running_loop()
        try:
            spool_id = await loop.run_in_executor(None, self.spool.put, raw, meta)
        except (OSError, SQLAlchemyError) as error:
            # One line per failure, not a traceback per request when a disk fills up.
            log.error("web: spool write failed, answering 503: %s", type(error).__name__)  # noqa: TRY400
            return self._refuse(request, wants_json, 503, [], retry_after=60)
        self.on_spooled()
        ticket = await self._wait_for_ticket(spool_id)
        log.info("web: request from %s spooled as %s, ticket %s", peer, spool_id, ticket)
        token = format_token(self.config.token_prefix, ticket) if ticket else None
        if wants_json:
            body = {"spool_id": spool_id, "ticket": ticket, "token": token}
            return web.json_response(body, status=201 if ticket else 202)
        return self._page(request, 201 if ticket else 202, ticket=token, queued=not ticket)

    async def _wait_for_ticket(self, spool_id: str) -> int | None:
        """The ticket the worker opened or joined for this submission, if it does so within
        TICKET_WAIT_SECONDS (the page then shows the number; else the mail brings it). Each
        look is a short query in the executor; the waiting is the event loop's, so waiting
        requests hold no thread."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + TICKET_WAIT_SECONDS
        while time.monotonic() < deadline:
            settled = await loop.run_in_executor(None, self._settled, spool_id)
            if settled is not None:
                return settled[0]  # None: stored without a ticket (quarantined, say)
            await asyncio.sleep(0.1)
        return None

    def _settled(self, spool_id: str) -> tuple[int | None] | None:
        """(ticket,) once the worker has stored the submission; None before."""
        with self.sessions() as session:
            row = session.execute(
                select(InboundMessage.ticket_id).where(InboundMessage.spool_id == spool_id)
            ).first()
        return (row[0],) if row is not None else None

    async def _read_form(self, request: web.Request) -> tuple[dict[str, str], list[UploadedFile]]:
        fields: dict[str, str] = {}
        files: list[UploadedFile] = []
        total = 0
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise TypeError("nested multipart")
            budget = self.limits.max_total_bytes - total
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                if len(data) > budget:
                    raise TooLarge
            total += len(data)
            if part.filename:
                if data:
                    kind = part.headers.get("Content-Type", "")
                    files.append(UploadedFile(part.filename, kind, bytes(data)))
            elif part.name and len(data) <= FORM_FIELD_BYTES:
                fields[part.name] = data.decode("utf-8")
        return fields, files

    async def _read_json(self, request: web.Request) -> tuple[dict[str, str], list[UploadedFile]]:
        body = await request.read()
        if len(body) > self.limits.max_total_bytes:
            raise TooLarge
        document = json.loads(body)
        if not isinstance(document, dict):
            raise TypeError("a JSON object is expected")
        return {str(k): str(v) for k, v in document.items() if isinstance(v, str)}, []

    def _refuse(
        self,
        request: web.Request,
        wants_json: bool,
        status: int,
        errors: list[FieldError],
        *,
        fields: dict[str, str] | None = None,
        retry_after: int | None = None,
    ) -> web.Response:
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        if wants_json:
            return web.json_response(
                {"errors": [asdict(e) for e in errors]}, status=status, headers=headers
            )
        kept = {k: v for k, v in (fields or {}).items() if k in FIELD_LIMITS and k != "website"}
        response = self._page(request, status, errors=errors or [FieldError("form", "too_many")],
                              values=kept)  # fmt: skip
        response.headers.update(headers)
        return response


def csrf_secret(master: bytes) -> bytes:
    """The form's signing key, derived from the artifact key every machine already shares,
    so that a page served by one sources process is accepted by another."""
    return hmac.new(master, b"maild web form csrf", hashlib.sha256).digest()


class WebController:
    """The aiohttp server in a thread with its own event loop, as aiosmtpd's Controller."""

    def __init__(self, intake: WebIntake, host: str, port: int) -> None:
        self.intake = intake
        self.host = host
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread: threading.Thread | None = None
        self.runner: web.AppRunner | None = None

    def start(self) -> None:
        self.runner = web.AppRunner(self.intake.application(), access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, self.host, self.port)
        self.loop.run_until_complete(site.start())
        self.thread = threading.Thread(target=self.loop.run_forever, name="web", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread is None or self.runner is None:
            return
        future = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
        future.result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        self.thread = None

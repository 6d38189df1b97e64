"""The product's Telegram bot: private chats in (long polling), answers out (the outbox).

In: `TelegramSource` asks `getUpdates` (a long poll of `[inbound.telegram] poll_seconds`)
from the position kept in the database, fetches each message's files (`getFile`, then the
file itself, within the artifact limits), writes the message as mail into the spool, and
only then records the next position (storage.telegram): asking from past an update is what
confirms it to Telegram, so an update is never lost, and one fetched again after a crash is
the same bytes with the same Message-ID, a `duplicate`. `/start` and `/help` are answered by
the bot itself and open nothing. On a shared database one process serves the bot at a time
(an advisory lock, as an IMAP mailbox): Telegram answers a second poller with 409.

Out: `TelegramTransport` is the outbox's transport for rows addressed to a chat
(`tg<chat>@telegram.invalid`, see `maild.outbound.RoutedTransport`): the acknowledgement
and the engineers' answers go to the chat as `sendMessage` texts and `sendDocument` files.
Like SMTP, at-least-once across a crash between the send and its record.

aiohttp's client (already maild's HTTP library, for the request form) on an event loop of
the bot's own thread; callers are threads and block on the result, and `close` cancels a
long poll in flight, so that a SIGTERM is not held up by it. The token is in every URL of
the Bot API: no URL, and no client exception text (which may quote one), is ever logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from maild.clock import Clock
from maild.compose import build_mail, render, template_environment, wire_bytes
from maild.config import Config, TelegramInboundConfig
from maild.errors import ConfigError, MaildError, PermanentError, TransientError
from maild.outbound import Delivered
from maild.sources.telegram import (
    LinkDecision,
    RetryLater,
    TelegramMessage,
    api_failure,
    bot_command,
    chat_reply,
    command_argument,
    decide_link,
    link_code,
    message_id_of,
    message_to_mail,
    next_link,
    read_update,
    unreadable_message_id,
    unreadable_update_mail,
    update_chat,
)
from parsers.reachability import chat_of_address
from storage.locks import LeaderLock
from storage.spool import SpoolMeta, SpoolWriter
from storage.telegram import (
    LinkChange,
    count_link_mails,
    load_last_message,
    load_link,
    load_next_update,
    record_update,
)

log = logging.getLogger(__name__)
CALL_SECONDS = 30.0
DOWNLOAD_SECONDS = 120.0
RETRY_SECONDS = 5.0
RETRY_MAX_SECONDS = 60.0
LEADER_RETRY_SECONDS = 2.0
UNREADABLE_ATTEMPTS = 3
"""An update whose conversion failed this many times is spooled as it came."""
DOWNLOAD_ATTEMPTS = 3
"""A file whose download failed this many times (each time the update was fetched again)
is named in the text as not received, so that one file never holds a chat back."""
FLOOD_WAIT_SECONDS = 10
FLOOD_ATTEMPTS = 3
LINK_SUBJECTS = {
    "ru": "Код для связи адреса с чатом поддержки Cubisio в Telegram",
    "en": "Your code to link this address with Cubisio support in Telegram",
}
BOT_API_FILE_BYTES = 20 * 1024 * 1024
"""The Bot API lets a bot download files of up to 20 MB (getFile)."""


class BotStopped(MaildError):
    """The bot was closed while a call was in flight (maild is stopping)."""


class FileTooLarge(PermanentError):
    """A file over the limit; it is named in the text, not fetched."""


class BotApi:
    """Bot API calls for threads, over aiohttp on the bot's own event loop.

    `token` is read at the first call (`TelegramInboundConfig.token`): a CLI command that
    never talks to Telegram does not need the token file."""

    def __init__(self, api_url: str, token: str | Callable[[], str]) -> None:
        self._api_url = api_url.rstrip("/")
        self._token = token
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        files: dict[str, tuple[str, str, bytes]] | None = None,
        timeout: float = CALL_SECONDS,
    ) -> Any:
        """The method's `result`; TransientError or PermanentError as `api_failure` says;
        BotStopped on close. `files`: field -> (filename, content type, bytes), sent as
        multipart with `params` as its other fields."""
        url = f"{self._api_url}/bot{self._read_token()}/{method}"
        return self._run(self._call(url, method, params or {}, files, timeout), timeout + 5)

    def download(self, file_path: str, limit: int) -> bytes:
        """A file `getFile` prepared; FileTooLarge past `limit` bytes (read no further)."""
        url = f"{self._api_url}/file/bot{self._read_token()}/{quote(file_path)}"
        return self._run(self._download(url, limit), DOWNLOAD_SECONDS + 5)  # type: ignore[no-any-return]

    def _read_token(self) -> str:
        if callable(self._token):
            self._token = self._token()  # ConfigError when the file is missing or wrong
        return self._token

    def close(self) -> None:
        """Cancel the calls in flight (their callers get BotStopped) and stop the loop.
        Closing twice is harmless."""
        with self._lock:
            self._closed = True
            pending, self._pending = list(self._pending), set()
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        for future in pending:
            future.cancel()
        if loop is None or thread is None:
            return
        # The session as the loop sees it: a first call may have made it after the lock.
        asyncio.run_coroutine_threadsafe(self._close_session(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    # --- the event loop side ---

    def _run(self, coroutine: Any, timeout: float) -> Any:
        with self._lock:
            if self._closed:
                coroutine.close()
                raise BotStopped("the Telegram bot is stopping")
            loop = self._ensure_loop()
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
            self._pending.add(future)
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            raise BotStopped("the Telegram bot is stopping") from None
        except TimeoutError:
            future.cancel()
            raise TransientError("telegram: no answer in time") from None
        finally:
            with self._lock:
                self._pending.discard(future)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="telegram-api", daemon=True
            )
            self._thread.start()
            self._loop = loop
        return self._loop

    async def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
            )
        return self._session

    async def _call(
        self,
        url: str,
        method: str,
        params: dict[str, Any],
        files: dict[str, tuple[str, str, bytes]] | None,
        seconds: float,
    ) -> Any:
        session = await self._client()
        body: aiohttp.FormData | None = None
        if files:
            # quote_fields=False: the file name as UTF-8, as Telegram reads it (aiohttp would
            # percent-encode it, and a Russian name would reach the chat as %D0%BE...).
            body = aiohttp.FormData(quote_fields=False)
            for name, value in params.items():
                body.add_field(name, value if isinstance(value, str) else json.dumps(value))
            for field, (filename, content_type, data) in files.items():
                body.add_field(field, data, filename=filename, content_type=content_type)
        try:
            async with session.post(
                url,
                json=None if body is not None else params,
                data=body,
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                status = response.status
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as error:
            # The exception's text may quote the URL, and so the token: only its type.
            raise TransientError(f"telegram: {method}: {type(error).__name__}") from None
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and payload.get("ok") is True:
            return payload.get("result")
        raise api_failure(status, payload)

    async def _download(self, url: str, limit: int) -> bytes:
        session = await self._client()
        try:
            async with session.get(
                url, timeout=aiohttp.ClientTimeout(total=DOWNLOAD_SECONDS)
            ) as response:
                if response.status != 200:
                    raise api_failure(response.status, None)
                if (response.content_length or 0) > limit:
                    raise FileTooLarge(f"larger than {limit} bytes")
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > limit:
                        raise FileTooLarge(f"larger than {limit} bytes")
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise TransientError(f"telegram: download: {type(error).__name__}") from None


class TelegramSource:
    """Long polling into the spool; see the module's docstring for the order of writes."""

    def __init__(
        self,
        config: Config,
        api: BotApi,
        spool: SpoolWriter,
        engine: Engine,
        *,
        clock: Clock,
        on_spooled: Callable[[], None],
        stopping: threading.Event,
        link_secret: bytes,
        on_queued: Callable[[], None] = lambda: None,
        leader: LeaderLock | None = None,
    ) -> None:
        if config.telegram is None:
            raise ValueError("[inbound.telegram] is off")
        self.maild_config = config
        self.config: TelegramInboundConfig = config.telegram
        self.api = api
        self.spool = spool
        self.engine = engine
        self.clock = clock
        self.on_spooled = on_spooled
        self.on_queued = on_queued
        """Called when mail was put in the outbox (a code for `/email`): the sender wakes."""
        self.stopping = stopping
        self.link_secret = link_secret
        self.support_address = config.mailbox.address
        self.mail_domain = config.mail_domain
        self.language = config.tickets.language
        self.max_file_bytes = min(config.artifacts.max_attachment_bytes, BOT_API_FILE_BYTES)
        mailbox = config.mailbox
        self.own_addresses = frozenset(
            a
            for a in (
                mailbox.address,
                mailbox.comment_address,
                *(e.email for e in config.engineers),
            )
            if a
        )
        """Addresses no chat may claim: ours and our engineers'."""
        self.leader = leader
        self.bot_id: int | None = None
        self.connected = threading.Event()
        self._download_failures: dict[str, int] = {}
        self._update_failures: dict[int, int] = {}

    @property
    def serving(self) -> bool:
        return self.leader is None or self.leader.held

    def run(self) -> None:
        backoff = RETRY_SECONDS
        while not self.stopping.is_set():
            if self.leader is not None and not self.leader.acquire():
                self.stopping.wait(LEADER_RETRY_SECONDS)
                continue
            try:
                self.poll_once()
            except BotStopped:
                break
            except Exception as error:  # noqa: BLE001 - the source loop's one catch-all
                self.connected.clear()
                level, text = _failure(error)
                log.log(level, "telegram: %s; asking again in %.0f s", text, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, RETRY_MAX_SECONDS)
                continue
            backoff = RETRY_SECONDS
        if self.leader is not None:
            self.leader.release()

    def poll_once(self) -> int:
        """One getUpdates long poll and everything it brought; the number of updates."""
        if self.bot_id is None:
            me = self.api.call("getMe")
            self.bot_id = int(me["id"])
            log.info("telegram: serving as @%s", me.get("username", self.bot_id))
        offset = load_next_update(self.engine, self.bot_id)
        updates = self.api.call(
            "getUpdates",
            {"offset": offset, "timeout": self.config.poll_seconds, "allowed_updates": ["message"]},
            timeout=self.config.poll_seconds + CALL_SECONDS,
        )
        self.connected.set()
        for update in updates if isinstance(updates, list) else []:
            if self.stopping.is_set():
                break  # the rest is fetched again by whoever polls next
            if isinstance(update, dict) and isinstance(update.get("update_id"), int):
                self.take_isolated(self.bot_id, update)
        return len(updates) if isinstance(updates, list) else 0

    def take_isolated(self, bot_id: int, update: dict[str, Any]) -> None:
        """`take`, with one update's failure kept to that update: a hostile or odd update
        (a CR in a file name, a field of the wrong type) is tried again UNREADABLE_ATTEMPTS
        times (the same update comes back from getUpdates), then spooled as it came, its
        JSON attached for an engineer, so that it never holds the chat's queue back and
        nothing is dropped. Outages (the database, the disk, Telegram) are not its failure
        and propagate."""
        update_id = int(update["update_id"])
        try:
            self.take(bot_id, update)
        except (BotStopped, TransientError, SQLAlchemyError, OSError):
            raise
        except Exception as error:  # noqa: BLE001 - one update's isolation (STYLE.md)
            failures = self._update_failures.get(update_id, 0) + 1
            self._update_failures[update_id] = failures
            reason = type(error).__name__
            if failures < UNREADABLE_ATTEMPTS:
                raise TransientError(f"update {update_id} could not be read ({reason})") from None
            raw = unreadable_update_mail(
                update, reason, bot_id=bot_id, support_address=self.support_address,
                mail_domain=self.mail_domain,
            )  # fmt: skip
            meta = SpoolMeta(source="telegram", received_at=self.clock.now().isoformat(),
                             peer="telegram")  # fmt: skip
            spool_id = self.spool.put(raw, meta)
            log.error("telegram: update %s could not be read (%s) %s times; spooled as it "  # noqa: TRY400
                      "came, as %s", update_id, reason, failures, spool_id)  # fmt: skip
            self.on_spooled()
            chat_id = update_chat(update)
            chat = None
            if chat_id is not None:  # the chat's next message follows this one
                chat = (chat_id, unreadable_message_id(update, bot_id, self.mail_domain))
            record_update(self.engine, bot_id, update_id + 1, self.clock.now(), chat=chat)
        self._update_failures.pop(update_id, None)

    def take(self, bot_id: int, update: dict[str, Any]) -> None:
        """One update into the spool (or a command carried out, or skipped), then its
        position, with what a command changed, in one transaction; the bot's answer last
        (a crash before it loses an answer, never a change or a message)."""
        message = read_update(update)
        chat: tuple[int, str] | None = None
        change: LinkChange | None = None
        answer: str | None = None
        if message is not None:
            command = None if message.files else bot_command(message.text)
            if not message.text.strip() and not message.files:
                answer = self.answer_text(message, "unsupported")  # a poll: said, not dropped
            elif command == "email":
                decision, change = self.link_email(message)
                answer = self.answer_text(message, command, decision)
            elif command is not None:
                answer = self.answer_text(message, command)
            else:
                chat = (message.chat_id, self.spool_message(bot_id, message))
        record_update(
            self.engine, bot_id, update["update_id"] + 1, self.clock.now(),
            chat=chat, change=change,
        )  # fmt: skip
        if change is not None and change.code_mail is not None:
            self.on_queued()
        if message is not None and answer is not None:
            self.send_answer(message, answer)

    def spool_message(self, bot_id: int, message: TelegramMessage) -> str:
        """The message as mail, durably in the spool; its Message-ID."""
        downloads, refused = self.fetch_files(message)
        previous = load_last_message(self.engine, message.chat_id)
        raw = message_to_mail(
            message, downloads, support_address=self.support_address,
            mail_domain=self.mail_domain, bot_id=bot_id, previous=previous, refused=refused,
        )  # fmt: skip
        message_id = message_id_of(message, bot_id, self.mail_domain)
        meta = SpoolMeta(
            source="telegram", received_at=self.clock.now().isoformat(),
            peer=f"telegram:{message.chat_id}",
        )  # fmt: skip
        spool_id = self.spool.put(raw, meta)
        log.info("telegram: message %s of chat %s spooled as %s",
                 message.message_id, message.chat_id, spool_id)  # fmt: skip
        self.on_spooled()
        return message_id

    def fetch_files(self, message: TelegramMessage) -> tuple[dict[str, bytes], dict[str, str]]:
        """(bytes by file_id, the reason by file_id for those not fetched). A transient
        failure raises, so that the update is fetched again, DOWNLOAD_ATTEMPTS times."""
        downloads: dict[str, bytes] = {}
        refused: dict[str, str] = {}
        too_large = f"larger than {self.max_file_bytes // (1024 * 1024)} MB"
        for item in message.files:
            if item.size > self.max_file_bytes:
                refused[item.file_id] = too_large
                continue
            try:
                found = self.api.call("getFile", {"file_id": item.file_id})
                downloads[item.file_id] = self.api.download(
                    str(found["file_path"]), self.max_file_bytes
                )
            except FileTooLarge:
                refused[item.file_id] = too_large
            except PermanentError as error:
                refused[item.file_id] = str(error)
            except RetryLater:
                raise  # Telegram asks us to slow down: not the file's failure
            except TransientError:
                failures = self._download_failures.get(item.file_id, 0) + 1
                self._download_failures[item.file_id] = failures
                if failures < DOWNLOAD_ATTEMPTS:
                    raise
                refused[item.file_id] = "Telegram did not give the file"
            except (KeyError, TypeError):
                refused[item.file_id] = "Telegram gave no file path"
        for file_id in downloads | refused:
            self._download_failures.pop(file_id, None)
        return downloads, refused

    def answer_text(
        self, message: TelegramMessage, command: str, decision: LinkDecision | None = None
    ) -> str:
        """What the bot says to /start, /help, /email, or to a message of a kind maild
        cannot keep; in the user's language."""
        templates = {"email": "telegram_link", "unsupported": "telegram_unsupported"}
        template = templates.get(command, "telegram_welcome")
        language = self._language(message)
        if decision is not None:
            log.info("telegram: /email in chat %s: %s", message.chat_id, decision.reason)
        else:
            log.info("telegram: %s answered in chat %s", command, message.chat_id)
        text = template_environment().get_template(f"{template}.{language}.txt.j2").render(
            support_address=self.support_address, token_prefix=self.maild_config.token_prefix,
            decision=decision, command=command,
        )  # fmt: skip
        return text.strip()

    def send_answer(self, message: TelegramMessage, text: str) -> None:
        """Sent at once, not through the outbox: it is no ticket's mail, and an answer lost
        to an outage is asked for again."""
        try:
            self.api.call("sendMessage", {"chat_id": message.chat_id, "text": text})
        except (TransientError, PermanentError) as error:
            log.warning("telegram: answer to chat %s not sent: %s", message.chat_id, error)

    def _language(self, message: TelegramMessage) -> str:
        if message.language:
            return "ru" if message.language.startswith("ru") else "en"
        return self.language

    def link_email(self, message: TelegramMessage) -> tuple[LinkDecision, LinkChange | None]:
        """`/email`, decided by `decide_link` and `next_link`; the change (and the code's
        mail) is written by `take` with the update's position."""
        chat_id, now = message.chat_id, self.clock.now()
        argument = command_argument(message.text)
        link = load_link(self.engine, chat_id)
        mailed = 0
        if "@" in argument:  # a code or nothing mails no one
            mailed = count_link_mails(self.engine, argument.lower(), now - timedelta(days=1))
        decision = decide_link(
            argument, link, now, secret=self.link_secret, chat_id=chat_id,
            own_addresses=self.own_addresses, mails_to_address_today=mailed,
        )  # fmt: skip
        changed = next_link(link, decision, now)
        if changed is None:
            return decision, None
        mail = None
        if decision.action == "send_code" and decision.address:
            code = link_code(self.link_secret, chat_id, decision.address, now)
            mail = self._code_mail(message, decision.address, code, self._language(message), now)
        return decision, LinkChange(chat_id, changed, mail)

    def _code_mail(
        self, message: TelegramMessage, address: str, code: str, language: str, now: datetime
    ) -> bytes:
        config = self.maild_config
        who = message.sender_name or (f"@{message.username}" if message.username else "")
        text = render(
            "telegram_link_code", language, code=code, address=address, who=who,
            support_address=self.support_address,
        )  # fmt: skip
        subject = LINK_SUBJECTS[language]
        mail = build_mail(
            config, to=[("", address)], subject=subject, text=text,
            message_id=f"maild.link.{secrets.token_hex(10)}@{config.mail_domain}",
            in_reply_to=None, references=[], now=now, auto_submitted="auto-generated",
        )  # fmt: skip
        return wire_bytes(mail)


def _failure(error: Exception) -> tuple[int, str]:
    """How the source loop logs a failed poll. Our own errors' texts hold no URL; of any
    other exception the type only, since its text may quote a URL and so the token."""
    if isinstance(error, (TransientError, PermanentError)):
        return logging.WARNING, str(error)
    if isinstance(error, (SQLAlchemyError, OSError)):
        # The spool or the database refused: nothing was confirmed, the updates come again.
        return logging.ERROR, f"could not store an update ({type(error).__name__})"
    return logging.ERROR, f"unexpected {type(error).__name__}"


def link_secret(master: bytes) -> bytes:
    """The key of `/email` codes, derived from the artifact key that every machine shares,
    so a code mailed by one sources process is checked by whichever holds the bot next."""
    return hmac.new(master, b"maild telegram link codes", hashlib.sha256).digest()


class TelegramTransport:
    """The outbox's way to a chat: each text of `chat_reply` as a message, then the files.

    A mail of several parts (a long answer, files) is several calls, and Telegram limits a
    bot to about one message a second per chat: a flood limit met after the first part is
    waited out here (up to FLOOD_WAIT_SECONDS). Any other failure of a later part fails the
    row, and its retry starts from the part that failed (`Delivered`): the user does not
    read the same text twice."""

    def __init__(self, api: BotApi, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.sleep = sleep
        self.delivered = Delivered()

    def send(self, key: str, envelope_from: str, recipients: list[str], raw: bytes) -> None:
        del envelope_from
        reply = chat_reply(raw)
        for address in recipients:
            chat_id = chat_of_address(address)
            if chat_id is None:
                raise PermanentError(f"{address} is not a Telegram chat")
            calls: list[tuple[str, dict[str, Any], dict[str, tuple[str, str, bytes]] | None]]
            calls = [("sendMessage", {"chat_id": chat_id, "text": text}, None)
                     for text in reply.texts]  # fmt: skip
            calls += [
                ("sendDocument", {"chat_id": str(chat_id)},
                 {"document": (item.filename, item.mime_type, item.data)})
                for item in reply.files
            ]  # fmt: skip
            done = self.delivered.count(key, address)
            try:
                for index, (method, params, files) in enumerate(calls):
                    if index < done:
                        continue  # delivered by an earlier attempt of this row
                    self._send_part(method, params, files, first=index == 0)
                    self.delivered.record(key, address, index + 1)
            except BotStopped as stopped:
                raise TransientError(str(stopped)) from None
            except ConfigError as error:  # the token file: the admin fixes it, we retry
                raise TransientError(str(error)) from None

    def _send_part(
        self,
        method: str,
        params: dict[str, Any],
        files: dict[str, tuple[str, str, bytes]] | None,
        *,
        first: bool,
    ) -> None:
        for _ in range(FLOOD_ATTEMPTS):
            try:
                self.api.call(method, params, files=files, timeout=DOWNLOAD_SECONDS)
            except RetryLater as limited:
                if first or limited.retry_after > FLOOD_WAIT_SECONDS:
                    raise
                self.sleep(limited.retry_after)
            else:
                return
        raise TransientError(f"telegram: {method}: still flood-limited")

    def flush(self) -> None:
        """Nothing to do: Telegram's answer is its promise to deliver."""

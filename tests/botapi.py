"""A local stand-in for the Telegram Bot API: no machine here reaches api.telegram.org.

It speaks the API's real HTTP and JSON as the public documentation gives them
(core.telegram.org/bots/api: "Making requests", getUpdates, getMe, getFile, sendMessage,
sendDocument; the File, Message, User and Chat objects; the error object with `ok`,
`error_code`, `description` and `parameters.retry_after`): methods under `/bot<token>/`,
parameters as JSON, a urlencoded form or multipart, files under `/file/bot<token>/<path>`.
getUpdates long-polls as Telegram does: an update is dropped once a request asks from an
offset past it, and a request with nothing to give waits up to its `timeout`.

A test pushes users' messages in (`push`), gives files (`put_file`), makes a method fail
(`fail`), and reads what the bot sent (`sent`, `wait_sent`) and which offsets it asked from.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"  # noqa: S105 - the stand-in's own
BOT_USER = {
    "id": 7012345678, "is_bot": True, "first_name": "Cubisio Support",
    "username": "cubisio_support_bot", "can_join_groups": True,
    "can_read_all_group_messages": False, "supports_inline_queries": False,
}  # fmt: skip
MAX_TEXT = 4096
MAX_DOWNLOAD = 20 * 1024 * 1024


@dataclass
class Sent:
    method: str
    chat_id: int
    text: str = ""
    filename: str = ""
    data: bytes = b""


@dataclass
class Failure:
    status: int
    description: str
    times: int
    retry_after: int | None = None
    skip: int = 0
    """Calls of the method that pass before this failure starts."""


@dataclass
class BotApiStandIn:
    token: str = TOKEN
    updates: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    blocked_chats: set[int] = field(default_factory=set)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._update_ids = itertools.count(824512001)
        self._message_ids = itertools.count(9001)
        self._loop = asyncio.new_event_loop()
        self._arrived: asyncio.Event | None = None
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.port = 0

    # --- the test's side ---

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BotApiStandIn:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._arrived = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        assert self._runner is not None
        self._loop.call_soon_threadsafe(self._close_polls)  # answer long polls in wait now
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join()
        self._loop.close()

    def push(self, message: dict[str, Any], kind: str = "message") -> int:
        """A user's message arrives at Telegram: queued for getUpdates; its update_id."""
        update_id = next(self._update_ids)
        with self._lock:
            self.updates.append({"update_id": update_id, kind: message})
        self._loop.call_soon_threadsafe(self._wake)
        return update_id

    def put_file(self, file_id: str, data: bytes, path: str) -> None:
        with self._lock:
            self.files[file_id] = (path, data)

    def fail(
        self,
        method: str,
        status: int,
        description: str,
        *,
        times: int = 1,
        retry_after: int | None = None,
        skip: int = 0,
    ) -> None:
        with self._lock:
            self.failures.setdefault(method, []).append(
                Failure(status, description, times, retry_after, skip)
            )

    def pending(self) -> list[int]:
        with self._lock:
            return [u["update_id"] for u in self.updates]

    def sent_to(self, chat_id: int, method: str = "sendMessage") -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.chat_id == chat_id and s.method == method]

    def wait_sent(self, chat_id: int, count: int, method: str = "sendMessage", timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.sent_to(chat_id, method)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{method} to {chat_id}: {len(self.sent_to(chat_id, method))} "
                             f"of {count} in {timeout} s")  # fmt: skip

    # --- Telegram's side ---

    def _close_polls(self) -> None:
        self._closing = True
        self._wake()

    def _wake(self) -> None:
        assert self._arrived is not None
        self._arrived.set()

    @staticmethod
    def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, Any]]:
        """(parameters, uploaded files by field: (filename, bytes)), however they came."""
        params: dict[str, Any] = dict(request.query)
        files: dict[str, Any] = {}
        if request.content_type == "application/json":
            params |= await request.json()
        elif request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                data = await part.read()  # type: ignore[union-attr]
                if part.filename:  # type: ignore[union-attr]
                    # The name as sent, not as aiohttp's server would percent-decode it:
                    # Telegram takes the parameter literally.
                    raw = part.headers.get("Content-Disposition", "")
                    named = re.search(r'filename="([^"]*)"', raw)
                    filename = named.group(1) if named else part.filename  # type: ignore[union-attr]
                    files[part.name] = (filename, bytes(data))  # type: ignore[union-attr]
                else:
                    params[part.name] = bytes(data).decode()  # type: ignore[union-attr]
        elif request.content_type == "application/x-www-form-urlencoded":
            params |= dict(await request.post())
        return params, files

    def _take_failure(self, method: str) -> Failure | None:
        with self._lock:
            queue = self.failures.get(method) or []
            if not queue:
                return None
            failure = queue[0]
            if failure.skip > 0:
                failure.skip -= 1
                return None
            failure.times -= 1
            if failure.times <= 0:
                queue.pop(0)
            return failure

    async def _method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"]
        self.requests.append(method)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._error(404, "Not Found")
        failure = self._take_failure(method)
        if failure is not None:
            return self._error(failure.status, failure.description, failure.retry_after)
        params, files = await self._params(request)
        return await handler(params, files)  # type: ignore[no-any-return]

    async def _m_getMe(self, _params, _files) -> web.Response:
        return self._ok(BOT_USER)

    async def _m_getUpdates(self, params, _files) -> web.Response:
        offset = int(params.get("offset", 0))
        timeout = min(int(params.get("timeout", 0)), 50)
        limit = min(int(params.get("limit", 100)), 100)
        self.offsets.append(offset)
        deadline = self._loop.time() + timeout
        while True:
            with self._lock:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
                ready = self.updates[:limit]
            rest = deadline - self._loop.time()
            if ready or rest <= 0 or self._closing:
                return self._ok(ready)
            assert self._arrived is not None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), rest)

    async def _m_getFile(self, params, _files) -> web.Response:
        file_id = str(params.get("file_id", ""))
        with self._lock:
            found = self.files.get(file_id)
        if found is None:
            return self._error(400, "Bad Request: invalid file_id")
        path, data = found
        if len(data) > MAX_DOWNLOAD:
            return self._error(400, "Bad Request: file is too big")
        return self._ok({
            "file_id": file_id, "file_unique_id": f"u{abs(hash(file_id)) % 10**8}",
            "file_size": len(data), "file_path": path,
        })  # fmt: skip

    def _chat(self, params: dict[str, Any]) -> int | web.Response:
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, ValueError):
            return self._error(400, "Bad Request: chat not found")
        if chat_id in self.blocked_chats:
            return self._error(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        return {
            "message_id": next(self._message_ids), "from": BOT_USER,
            "chat": {"id": chat_id, "type": "private"}, "date": int(time.time()), **content,
        }  # fmt: skip

    async def _m_sendMessage(self, params, _files) -> web.Response:
        chat = self._chat(params)
        if isinstance(chat, web.Response):
            return chat
        text = str(params.get("text", ""))
        if not text.strip():
            return self._error(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            return self._error(400, "Bad Request: message is too long")
        with self._lock:
            self.sent.append(Sent("sendMessage", chat, text=text))
        return self._ok(self._message(chat, text=text))

    async def _m_sendDocument(self, params, files) -> web.Response:
        chat = self._chat(params)
        if isinstance(chat, web.Response):
            return chat
        if "document" not in files:
            return self._error(400, "Bad Request: there is no document in the request")
        filename, data = files["document"]
        with self._lock:
            self.sent.append(Sent("sendDocument", chat, filename=filename, data=data))
        document = {"file_name": filename, "file_id": f"sent-{len(self.sent)}",
                    "file_unique_id": f"s{len(self.sent)}", "file_size": len(data)}  # fmt: skip
        return self._ok(self._message(chat, document=document))

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        path = request.match_info["path"]
        with self._lock:
            found = [data for p, data in self.files.values() if p == path]
        if not found:
            return self._error(404, "Not Found")
        return web.Response(body=found[0], content_type="application/octet-stream")


def user_message(chat_id: int, message_id: int, text: str = "", **extra: Any) -> dict[str, Any]:
    """A private message as Telegram delivers it in an Update."""
    person = {"id": chat_id, "is_bot": False, "first_name": "Пётр", "last_name": "Сидоров",
              "username": "psidorov", "language_code": "ru"}  # fmt: skip
    message: dict[str, Any] = {
        "message_id": message_id, "from": person,
        "chat": {"id": chat_id, "first_name": "Пётр", "last_name": "Сидоров",
                 "username": "psidorov", "type": "private"},
        "date": 1772528100 + message_id,
    }  # fmt: skip
    if text:
        message["text"] = text
    if text.startswith("/"):
        message["entities"] = [{"offset": 0, "length": len(text.split()[0]),
                                "type": "bot_command"}]  # fmt: skip
    message.update(extra)
    return message


def document(file_id: str, name: str, size: int, mime: str = "text/plain") -> dict[str, Any]:
    return {"file_name": name, "mime_type": mime, "file_id": file_id,
            "file_unique_id": f"u-{file_id}", "file_size": size}  # fmt: skip

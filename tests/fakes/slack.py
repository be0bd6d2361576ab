"""A Slack incoming-webhook endpoint on loopback: answers as Slack does and records what it received.

Slack's webhook protocol (https://api.slack.com/messaging/webhooks): ``POST`` a JSON body (or a
form field ``payload`` holding JSON) to ``/services/T…/B…/<secret>``; the answer is ``200 ok``, or a
status with a short error string as the body: ``400 invalid_payload`` (not a JSON object),
``400 no_text`` (neither text nor blocks nor attachments), ``400 invalid_blocks`` /
``invalid_blocks_format`` (Block Kit that breaks its limits), ``404 no_service`` (unknown or
disabled webhook), ``500 rollup_error`` (Slack's own trouble).

    with FakeSlack() as slack:
        requests.post(slack.url, json={"text": "hi"})
        assert slack.messages == [{"text": "hi"}]
        slack.fail(500, "rollup_error")   # every following request fails, until slack.recover()
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

WEBHOOK_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
MAX_BODY = 1 << 20

# Block Kit limits (https://api.slack.com/reference/block-kit/blocks, .../block-elements, .../composition-objects)
MAX_BLOCKS = 50
MAX_BLOCK_ID = 255
MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_ACTION_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_BUTTON_TEXT = 75
MAX_URL = 3000
MAX_ACTION_ID = 255
KNOWN_BLOCKS = {"actions", "context", "divider", "file", "header", "image", "input", "rich_text", "section", "video"}


@dataclass(frozen=True)
class Received:
    """One request as it arrived, and what the fake answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    answer: str


class BlockError(ValueError):
    """A Block Kit payload Slack would refuse; the message says where (``blocks[3].text.text``)."""


def _text_object(obj: Any, where: str, limit: int, *, plain_only: bool = False) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in ({"plain_text"} if plain_only else {"plain_text", "mrkdwn"}):
        raise BlockError(f"{where}: expected a {'plain_text' if plain_only else 'text'} object")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        raise BlockError(f"{where}.text: must be a non-empty string")
    if len(text) > limit:
        raise BlockError(f"{where}.text: {len(text)} characters, more than {limit}")


def _button(element: dict, where: str, action_ids: set[str]) -> None:
    _text_object(element.get("text"), f"{where}.text", MAX_BUTTON_TEXT, plain_only=True)
    url = element.get("url")
    if url is not None and (not isinstance(url, str) or len(url) > MAX_URL):
        raise BlockError(f"{where}.url: must be a string of at most {MAX_URL} characters")
    action_id = element.get("action_id")
    if action_id is not None:
        if not isinstance(action_id, str) or len(action_id) > MAX_ACTION_ID:
            raise BlockError(f"{where}.action_id: must be a string of at most {MAX_ACTION_ID} characters")
        if action_id in action_ids:
            raise BlockError(f"{where}.action_id: {action_id!r} is used twice")
        action_ids.add(action_id)


def validate_blocks(blocks: Any) -> None:
    """Raise :class:`BlockError` where Slack would answer ``invalid_blocks`` (the limits this project can hit)."""
    if not isinstance(blocks, list):
        raise BlockError("blocks: expected an array")
    if len(blocks) > MAX_BLOCKS:
        raise BlockError(f"blocks: {len(blocks)} blocks, more than {MAX_BLOCKS}")
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict) or block.get("type") not in KNOWN_BLOCKS:
            raise BlockError(f"{where}.type: unknown block type")
        if "block_id" in block:
            block_id = block["block_id"]
            if not isinstance(block_id, str) or len(block_id) > MAX_BLOCK_ID or block_id in block_ids:
                raise BlockError(f"{where}.block_id: must be unique and at most {MAX_BLOCK_ID} characters")
            block_ids.add(block_id)
        kind = block["type"]
        if kind == "header":
            _text_object(block.get("text"), f"{where}.text", MAX_HEADER_TEXT, plain_only=True)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                raise BlockError(f"{where}: a section needs text or fields")
            if "text" in block:
                _text_object(block["text"], f"{where}.text", MAX_SECTION_TEXT)
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= MAX_SECTION_FIELDS:
                    raise BlockError(f"{where}.fields: 1 to {MAX_SECTION_FIELDS} text objects")
                for j, item in enumerate(fields):
                    _text_object(item, f"{where}.fields[{j}]", MAX_FIELD_TEXT)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_ACTION_ELEMENTS:
                raise BlockError(f"{where}.elements: 1 to {MAX_ACTION_ELEMENTS} elements")
            for j, element in enumerate(elements):
                if not isinstance(element, dict):
                    raise BlockError(f"{where}.elements[{j}]: expected an element object")
                if element.get("type") == "button":
                    _button(element, f"{where}.elements[{j}]", action_ids)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
                raise BlockError(f"{where}.elements: 1 to {MAX_CONTEXT_ELEMENTS} elements")
            for j, element in enumerate(elements):
                if not (isinstance(element, dict) and element.get("type") == "image"):
                    _text_object(element, f"{where}.elements[{j}]", MAX_SECTION_TEXT)


class FakeSlack:
    """A thread-based HTTP server on ``127.0.0.1`` that takes Slack incoming-webhook posts.

    ``url``: the webhook URL. ``messages``: the payloads Slack would have posted (accepted ones).
    ``requests``: every request received, accepted or not. ``errors``: why each refused request was
    refused (the Block Kit path for ``invalid_blocks``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, path: str = WEBHOOK_PATH) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._received = threading.Condition(self._lock)
        self._requests: list[Received] = []
        self._messages: list[dict] = []
        self.errors: list[str] = []
        self._failure: tuple[int, str, int | None] | None = None
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle
    def start(self) -> FakeSlack:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-slack",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests look at
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The incoming-webhook URL (``http://127.0.0.1:<port>/services/T…/B…/X…``)."""
        return self.base_url + self.path

    @property
    def token(self) -> str:
        """The webhook path after ``/services/``: what an Airflow ``slackwebhook`` connection calls the token."""
        return self.path.removeprefix("/services/")

    def connection(self) -> dict[str, str]:
        """An Airflow ``slackwebhook`` connection (JSON form of ``AIRFLOW_CONN_…``) pointing here."""
        return {"conn_type": "slackwebhook", "host": f"{self.base_url}/services", "password": self.token}

    @property
    def messages(self) -> list[dict]:
        with self._lock:
            return list(self._messages)

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        """Block until ``count`` messages were accepted (for senders in other threads or processes)."""
        with self._received:
            if not self._received.wait_for(lambda: len(self._messages) >= count, timeout=timeout):
                raise TimeoutError(f"{len(self._messages)} Slack messages after {timeout} s, expected {count}")
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._messages.clear()
            self.errors.clear()

    # --- failure injection
    def fail(self, status: int = 500, error: str = "rollup_error", times: int | None = None) -> None:
        """Answer the next ``times`` requests (all, when ``None``) with ``status`` and ``error``."""
        with self._lock:
            self._failure = (status, error, times)

    def recover(self) -> None:
        with self._lock:
            self._failure = None

    # --- protocol
    def _answer(self, method: str, path: str, content_type: str, body: bytes) -> tuple[int, str, dict | None]:
        with self._lock:
            if self._failure is not None:
                status, error, times = self._failure
                if times is not None:
                    self._failure = (status, error, times - 1) if times > 1 else None
                return status, error, None
        if path != self.path:
            return 404, "no_service", None
        if method != "POST":
            return 405, "invalid_method", None
        try:
            if content_type.startswith("application/x-www-form-urlencoded"):
                (raw,) = parse_qs(body.decode()).get("payload", [""])
                payload = json.loads(raw)
            else:
                payload = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            return 400, "invalid_payload", None
        if not isinstance(payload, dict):
            return 400, "invalid_payload", None
        if "text" in payload and not isinstance(payload["text"], str):
            return 400, "invalid_payload", None
        if not (payload.get("text") or payload.get("blocks") or payload.get("attachments")):
            return 400, "no_text", None
        if "blocks" in payload:
            if not isinstance(payload["blocks"], list):
                return 400, "invalid_blocks_format", None
            try:
                validate_blocks(payload["blocks"])
            except BlockError as exc:
                with self._lock:
                    self.errors.append(str(exc))
                return 400, "invalid_blocks", None
        return 200, "ok", payload

    def _record(self, received: Received, payload: dict | None) -> None:
        with self._received:
            self._requests.append(received)
            if payload is not None:
                self._messages.append(payload)
            self._received.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "FakeSlack/1"
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    status, answer, payload, body = 413, "request_too_large", None, b""
                    self.close_connection = True
                else:
                    body = self.rfile.read(length)
                    status, answer, payload = fake._answer(
                        self.command, self.path, self.headers.get("Content-Type", ""), body)
                fake._record(Received(self.command, self.path, dict(self.headers), body, status, answer), payload)
                data = answer.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        return Handler

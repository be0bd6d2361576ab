"""The fake Slack answers incoming-webhook requests the way Slack documents, over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.fakes.slack import FakeSlack


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_accepts_json_and_form_payloads_and_records_them(slack):
    assert slack.url.startswith("http://127.0.0.1:") and slack.url.endswith("/services/T00000000/B00000000/"
                                                                             "XXXXXXXXXXXXXXXXXXXXXXXX")
    assert _post(slack.url, json.dumps({"text": "hello"}).encode()) == (200, "ok")
    form = urllib.parse.urlencode({"payload": json.dumps({"text": "form"})}).encode()
    assert _post(slack.url, form, "application/x-www-form-urlencoded") == (200, "ok")
    assert slack.messages == [{"text": "hello"}, {"text": "form"}]
    assert [r.status for r in slack.requests] == [200, 200]


@pytest.mark.parametrize("body, answer", [
    (b"{not json", (400, "invalid_payload")),
    (b"[1, 2]", (400, "invalid_payload")),
    (b'{"text": 3}', (400, "invalid_payload")),
    (b"{}", (400, "no_text")),
    (b'{"text": "", "blocks": []}', (400, "no_text")),
    (b'{"text": "x", "blocks": {"type": "header"}}', (400, "invalid_blocks_format")),
    (json.dumps({"text": "x", "blocks": [{"type": "divider"}] * 51}).encode(), (400, "invalid_blocks")),
    (json.dumps({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]}).encode(),
     (400, "invalid_blocks")),
    (json.dumps({"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}]}).encode(),
     (400, "invalid_blocks")),
    (json.dumps({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}]}).encode(),
     (400, "invalid_blocks")),
    (json.dumps({"blocks": [{"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "b" * 76}, "url": "http://x"}]}]}).encode(),
     (400, "invalid_blocks")),
    (json.dumps({"blocks": [{"type": "banner"}]}).encode(), (400, "invalid_blocks")),
])
def test_refuses_bad_payloads_as_slack_does(slack, body, answer):
    assert _post(slack.url, body) == answer
    assert slack.messages == []
    assert len(slack.requests) == 1 and slack.requests[0].body == body


def test_names_where_blocks_break_the_limits(slack):
    blocks = [{"type": "divider"}, {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}]
    assert _post(slack.url, json.dumps({"blocks": blocks}).encode()) == (400, "invalid_blocks")
    assert slack.errors == ["blocks[1].fields[0].text: 2001 characters, more than 2000"]


def test_unknown_webhook_and_injected_failures(slack):
    assert _post(slack.url.replace("XXXX", "YYYY", 1), b'{"text": "x"}') == (404, "no_service")

    slack.fail(500, "rollup_error", times=2)
    assert _post(slack.url, b'{"text": "x"}') == (500, "rollup_error")
    assert _post(slack.url, b'{"text": "x"}') == (500, "rollup_error")
    assert _post(slack.url, b'{"text": "ok now"}') == (200, "ok")

    slack.fail(404, "no_service")
    assert [_post(slack.url, b'{"text": "x"}') for _ in range(3)] == [(404, "no_service")] * 3
    slack.recover()
    assert _post(slack.url, b'{"text": "back"}') == (200, "ok")
    assert slack.messages == [{"text": "ok now"}, {"text": "back"}]
    assert slack.wait_for(2, timeout=1) == slack.messages

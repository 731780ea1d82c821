"""Helpers of the HTTP endpoint's tests (test_http_*.py): an OpenAI client
on a server's http_address, raw requests with curl (subprocess), an SSE
reader, and a bounded wait (metrics: engine_checks.py)."""

import json
import shutil
import subprocess
import time

import pytest


CALL_TIMEOUT_S = 120
# A message the model keeps answering for as long as it may (counting), so
# a request is still running when a test interrupts it.
ENDLESS = "Count from 1 to 1000, one number per line."


def openai_client(server, api_key="none", scheme="http", http_client=None):
    """The official client on `server`'s HTTP endpoint, without retries (a
    429 must reach the test)."""
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{scheme}://{server.http_address}/v1", api_key=api_key,
                         max_retries=0, timeout=CALL_TIMEOUT_S, http_client=http_client)


def user(text):
    return [{"role": "user", "content": text}]


def curl(*args, data=None):
    """Runs curl with `args`, `data` (bytes) on stdin when given; returns
    (HTTP status, headers, body). Skips when curl is missing."""
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    command = ["curl", "-sS", "-D", "-", "--max-time", str(CALL_TIMEOUT_S), *args]
    if data is not None:
        command += ["--data-binary", "@-"]
    result = subprocess.run(command, input=data, capture_output=True, timeout=CALL_TIMEOUT_S + 10)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    out = result.stdout
    # -D - prints every response's headers (a 100 Continue first, maybe).
    while True:
        head, _, out = out.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if status != 100:
            break
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, out


def post_json(server, path, body, *curl_args):
    """POSTs `body` (a dict, or bytes as they are) to `path`; (status,
    headers, body bytes)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return curl("-X", "POST", f"http://{server.http_address}{path}",
                "-H", "Content-Type: application/json", *curl_args, data=data)


def error_of(body):
    """The "error" object of an OpenAI error body, checked for its shape."""
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return error


def sse_events(body):
    """The data of each server-sent event of `body` (bytes): parsed JSON,
    or the string "[DONE]"."""
    events = []
    for block in body.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def wait_until(condition, timeout, message):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)

"""conclave-load --protocol http against a real conclave-server's
OpenAI-compatible endpoint (docs/http.md, loadtest/README.md): a closed loop
of streamed chat completions and contemplations completes with latencies and
tokens; a burst against a one-request queue is refused with 429s that the
report counts (by_status, rejected_ms) while every admitted call completes
and the engine ends idle; a closed loop honours the 429s' Retry-After; a mix
with thinking, which has no HTTP route, exits 2 before sending anything.

Bounded: a few dozen short calls per test, every subprocess has a timeout;
the servers listen on 127.0.0.1 only.
"""

import json
import re
import subprocess

import pytest

import conclave_api
from engine_checks import assert_idle, metric

LOAD_TIMEOUT_S = 60
OVERLOADED = re.compile(r"^server overloaded: \d+ requests queued, retry later$")


def load_binary():
    path = conclave_api.build_dir() / "bin" / "conclave-load"
    if not path.exists():
        pytest.skip(f"{path} not built")
    return path


def run_load(server, *args):
    """conclave-load --protocol http on `server`'s HTTP endpoint (any other
    target when `server` is a string)."""
    target = server if isinstance(server, str) else server.http_address
    return subprocess.run(
        [str(load_binary()), "--protocol", "http", "--target", target, *args],
        capture_output=True, text=True, timeout=LOAD_TIMEOUT_S)


def report(server, *args):
    proc = run_load(server, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_closed_loop_of_chats_and_contemplations_completes(start_server):
    server = start_server("--max-agents", "4")
    r = report(server, "--concurrency", "2", "--requests", "6",
               "--mix", "instant=0.5,contemplate=0.5", "--agents", "2", "--max-tokens", "8",
               "--deadline-ms", "30000")
    assert r["config"]["protocol"] == "http"
    assert r["requests"]["issued"] == 6
    assert r["requests"]["by_status"] == {"200": 6}, r["errors"]
    assert r["requests"]["completed"] == 6
    assert r["requests"]["unfinished"] == 0
    assert r["errors"] == {}
    assert r["e2e_ms"]["count"] == 6
    assert 0 < r["ttft_ms"]["count"] <= 6
    assert 0 < r["ttft_ms"]["p50"] <= r["e2e_ms"]["max"]
    assert r["generated_tokens"] > 0
    assert r["agent_tokens"] > 0
    chat, contemplate = r["by_mode"]["instant"], r["by_mode"]["contemplate"]
    assert chat["completed"] >= 1 and contemplate["completed"] >= 1
    assert chat["generated_tokens"] > 0  # from the include_usage chunk
    assert chat["agent_tokens"] == 0
    assert contemplate["agent_tokens"] > 0
    # A contemplation's first token is its first agent text or its final answer.
    assert contemplate["ttft_ms"]["count"] == contemplate["completed"]
    assert_idle(server)


def test_a_burst_over_a_full_queue_is_refused_with_429s_and_the_rest_complete(start_server):
    server = start_server("--max-queued-requests", "1")
    r = report(server, "--rate", "500", "--requests", "24", "--mix", "instant=1",
               "--max-tokens", "16", "--deadline-ms", "30000")
    by_status = r["requests"]["by_status"]
    assert set(by_status) <= {"200", "429"}, r["errors"]
    refused = by_status.get("429", 0)
    assert refused >= 1, "24 calls at 500/s against a queue of 1 and none refused"
    assert by_status.get("200", 0) >= 1
    assert r["requests"]["completed"] == by_status["200"]  # every admitted call
    assert r["requests"]["unfinished"] == 0
    assert r["rejected_ms"]["count"] == refused
    assert OVERLOADED.match(r["errors"]["429"]), r["errors"]
    assert metric(server, "conclave_overload_rejections_total", reason="queue_full") == refused
    assert_idle(server)
    # Recovery: the next call runs.
    again = report(server, "--concurrency", "1", "--requests", "1", "--max-tokens", "4")
    assert again["requests"]["by_status"] == {"200": 1}, again["errors"]
    assert_idle(server)


def test_a_closed_loop_waits_the_retry_after_of_each_429(start_server):
    # One call at a time: the other clients are refused at once, Retry-After 1.
    server = start_server("--max-concurrent-requests", "1")
    seconds, clients = 3, 4
    r = report(server, "--concurrency", str(clients), "--duration", str(seconds),
               "--mix", "instant=1", "--max-tokens", "16", "--deadline-ms", "30000")
    refused = r["requests"]["by_status"].get("429", 0)
    assert refused >= 1, r["requests"]
    # Retry-After is 1 s: a client is refused at most once a second (plus
    # its first call); without waiting it would be refused hundreds of times.
    assert refused <= clients * (seconds + 1), r["requests"]
    assert r["config"]["honor_retry_after"] is True
    assert_idle(server)


def test_thinking_has_no_http_route_and_exits_2():
    # Checked before any connection: no server needed.
    proc = run_load("127.0.0.1:1", "--concurrency", "1", "--requests", "1",
                    "--mix", "instant=0.5,thinking=0.5")
    assert proc.returncode == 2, proc.stderr
    assert "thinking mode has no HTTP route" in proc.stderr
    assert "--protocol grpc" in proc.stderr
    assert proc.stdout == ""

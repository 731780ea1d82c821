"""Overload (docs/overload.md): a server with a tiny admission queue, hit by
a burst of concurrent calls, turns the excess away at once with
RESOURCE_EXHAUSTED "server overloaded: N requests queued, retry later" and a
retry-after trailer, runs every call it admitted to completion, counts the
refusals in conclave_overload_rejections_total, ends with the engine idle
(no request, sequence or KV block held) and serves the next call.
The same for calls that wait longer than --max-queue-wait-ms.

Bounded: a few dozen short calls per test, every wait has a timeout; the
servers listen on 127.0.0.1 only.
"""

import re
import threading

import pytest

from engine_checks import assert_idle, metric

grpc = pytest.importorskip("grpc")

CALL_TIMEOUT_S = 120
BURST = 40
OVERLOADED = re.compile(r"^server overloaded: (\d+) requests queued, retry later$")
EXPIRED = re.compile(r"^server overloaded: the request waited \d+ ms in the queue without "
                     r"starting, max_queue_wait_ms=100; retry later$")


def generate(api, i):
    return api.pb.GenerateRequest(
        messages=[api.pb.ChatMessage(role=api.pb.ROLE_USER, content=f"Count from {i} to {i + 5}.")],
        max_tokens=16, sampling=api.pb.SamplingParams(temperature=0.0))


def burst(api, address, n=BURST):
    """`n` Generate calls released together (one thread each); returns, per
    call, ("OK", generated tokens) or (code name, (details, trailers))."""
    results = [None] * n
    gate = threading.Barrier(n, timeout=CALL_TIMEOUT_S)
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = api.grpc.ConclaveStub(channel)

        def one(i):
            gate.wait()
            try:
                finals = [r.final for r in stub.Generate(generate(api, i), timeout=CALL_TIMEOUT_S)
                          if r.HasField("final")]
                results[i] = (("OK", finals[0].usage.generated_tokens) if len(finals) == 1
                              else ("NO_FINAL", None))
            except grpc.RpcError as e:
                results[i] = (e.code().name, (e.details(), dict(e.trailing_metadata() or ())))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=CALL_TIMEOUT_S + 30)
    assert all(r is not None for r in results), "a call never ended"
    return results


def assert_serving(api, server):
    with grpc.insecure_channel(server.address) as channel:
        stub = api.grpc.ConclaveStub(channel)
        finals = [r for r in stub.Generate(generate(api, 1), timeout=CALL_TIMEOUT_S)
                  if r.HasField("final")]
    assert len(finals) == 1


def test_a_full_queue_turns_the_excess_away_and_runs_every_admitted_call(api, start_server):
    server = start_server("--max-queued-requests", "2", "--max-queue-wait-ms", "0")
    results = burst(api, server.address)
    codes = [code for code, _ in results]
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    refused = [detail for code, detail in results if code == "RESOURCE_EXHAUSTED"]
    assert refused, "a burst of 40 calls against a queue of 2 refused none"
    assert codes.count("OK") >= 2, codes  # the admitted ones all completed
    for message, trailers in refused:
        match = OVERLOADED.match(message)
        assert match, message
        assert int(match.group(1)) >= 2, message
        assert trailers.get("retry-after") == "1", trailers
    assert metric(server, "conclave_overload_rejections_total", reason="queue_full") == len(refused)
    assert metric(server, "conclave_overload_rejections_total", reason="queue_timeout") == 0
    assert metric(server, "conclave_requests_total", code="RESOURCE_EXHAUSTED") == len(refused)
    assert_idle(server)
    assert_serving(api, server)  # recovery: the next call runs
    assert_idle(server)


def test_calls_queued_longer_than_max_queue_wait_fail_without_running(api, start_server):
    # 100 ms: shorter than a step that prefills a burst, far longer than an idle
    # engine takes to start a call.
    server = start_server("--max-queued-requests", "0", "--max-queue-wait-ms", "100")
    results = burst(api, server.address, n=24)
    codes = [code for code, _ in results]
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    expired = [detail for code, detail in results if code == "RESOURCE_EXHAUSTED"]
    assert expired, "24 calls at once and none waited 100 ms in the queue"
    for message, trailers in expired:
        assert EXPIRED.match(message), message
        assert trailers.get("retry-after") == "1", trailers
    assert metric(server, "conclave_overload_rejections_total",
                  reason="queue_timeout") == len(expired)
    # An expired call never ran: the calls that ran generated every token.
    assert metric(server, "conclave_generation_tokens_total", mode="instant") == \
        sum(tokens for code, tokens in results if code == "OK")
    assert_idle(server)
    assert_serving(api, server)
    assert_idle(server)

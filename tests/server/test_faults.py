"""Faults a production server meets, each followed by the same check: the
engine is idle again (no running or waiting request or sequence, no KV block
held) and the server still answers.

  clients cancelling mid-stream (Generate and Contemplate)
  clients killed mid-stream (the connection drops without a cancel)
  deadlines expiring while requests queue and run
  a slow reader of a Contemplate stream with agent text on, beside a fast caller
  a thousand concurrent streams on one connection
  SIGTERM under load: every admitted request drains, none is lost
  a KV pool too small for the load: sequences are preempted and recomputed,
  every request completes

Every wait is bounded; servers listen on 127.0.0.1 only.
"""

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import grpc
import pytest

import conclave_api
from engine_checks import IDLE_TIMEOUT_S, assert_idle, engine_state, metric

CALL_TIMEOUT_S = 120
ENDLESS_PROMPT = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"
MODEL = conclave_api.REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def wait_for_blocks_in_use(server):
    """Waits (bounded) until the engine's published state shows KV blocks
    held: the gauges are read from the step loop's last snapshot."""
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while engine_state(server)["conclave_kv_blocks_used"] == 0:
        assert time.monotonic() < deadline, "no KV block ever held"
        time.sleep(0.05)


def assert_serving(api, stub):
    request = generate(api, "Say hi.", 4)
    finals = [r.final for r in stub.Generate(request, timeout=CALL_TIMEOUT_S)
              if r.HasField("final")]
    assert len(finals) == 1


def generate(api, question, max_tokens, temperature=0.0):
    return api.pb.GenerateRequest(
        messages=[api.pb.ChatMessage(role=api.pb.ROLE_USER, content=question)],
        max_tokens=max_tokens, sampling=api.pb.SamplingParams(temperature=temperature))


def endless(api, max_tokens=2000):
    return api.pb.GenerateRequest(prompt=ENDLESS_PROMPT, max_tokens=max_tokens,
                                  sampling=api.pb.SamplingParams(temperature=0.0))


def contemplate(api, agents, max_tokens, stream_agent_text=False):
    pb = api.pb
    return pb.ContemplateRequest(
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content=QUESTION)], agents=agents,
        max_tokens=max_tokens, seed=7, answer_format=pb.ANSWER_FORMAT_NUMBER,
        aggregator=pb.AGGREGATOR_MAJORITY, stream_agent_text=stream_agent_text)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = conclave_api.build_dir() / "bin" / "conclave-server"
    if not binary.exists():
        pytest.skip(f"{binary} not built")
    if not MODEL.exists():
        pytest.skip(f"model {MODEL.name} not present (scripts/fetch_models.sh)")
    process = conclave_api.ServerProcess(
        MODEL, ["--threads", "2", "--kv-cache-mib", "64", "--max-agents", "8",
                "--max-concurrent-requests", "1100", "--max-queued-requests", "1000"],
        tmp_path_factory.mktemp("faults") / "server.log", start_timeout=60, stop_timeout=20)
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as channel:
        yield channel


@pytest.fixture
def stub(api, channel, server):
    """The module server's stub; after the test, the engine must be idle and
    still serving."""
    stub = api.grpc.ConclaveStub(channel)
    yield stub
    assert_idle(server)
    assert_serving(api, stub)
    assert_idle(server)


def test_cancelling_generate_and_contemplate_mid_stream_frees_every_block(api, stub, server):
    call = stub.Generate(endless(api), timeout=CALL_TIMEOUT_S)
    assert next(call).HasField("delta")
    events = stub.Contemplate(contemplate(api, 4, 400, stream_agent_text=True),
                              timeout=CALL_TIMEOUT_S)
    for event in events:
        if event.WhichOneof("event") == "agent_text":
            break
    wait_for_blocks_in_use(server)
    call.cancel()
    events.cancel()
    for stream in (call, events):
        with pytest.raises(grpc.RpcError) as error:
            list(stream)
        assert error.value.code() == grpc.StatusCode.CANCELLED


CLIENT = textwrap.dedent("""
    import sys
    import grpc
    sys.path.insert(0, sys.argv[1])
    from conclave.v1 import conclave_pb2 as pb, conclave_pb2_grpc as pbg
    stub = pbg.ConclaveStub(grpc.insecure_channel(sys.argv[2]))
    if sys.argv[3] == "generate":
        call = stub.Generate(pb.GenerateRequest(prompt="1, 2, 3, 4, 5, 6, 7, 8,", max_tokens=2000))
    else:
        call = stub.Contemplate(pb.ContemplateRequest(
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="What is 2 + 2?")],
            agents=4, max_tokens=1000, stream_agent_text=True))
    for message in call:
        if sys.argv[3] == "generate" or message.WhichOneof("event") == "agent_text":
            break
    print("streaming", flush=True)
    for _ in call:
        pass
""")


@pytest.mark.parametrize("method", ["generate", "contemplate"])
def test_a_client_killed_mid_stream_frees_its_blocks(api, stub, server, method):
    client = subprocess.Popen([sys.executable, "-c", CLIENT, api.stubs_dir, server.address, method],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "streaming"
        wait_for_blocks_in_use(server)
    finally:
        client.kill()
        client.wait(timeout=10)


def test_deadlines_expiring_in_the_queue_and_mid_stream_free_everything(api, stub, server):
    calls = [stub.Generate(endless(api), timeout=0.2 + 0.1 * i) for i in range(12)]
    calls += [stub.Contemplate(contemplate(api, 4, 400), timeout=0.5 + 0.2 * i) for i in range(3)]
    codes = []
    for call in calls:
        try:
            list(call)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            codes.append(e.code())
    assert set(codes) == {grpc.StatusCode.DEADLINE_EXCEEDED}, codes


def test_a_slow_reader_does_not_hold_up_other_callers(api, stub, server):
    slow = stub.Contemplate(contemplate(api, 4, 96, stream_agent_text=True), timeout=CALL_TIMEOUT_S)
    assert next(slow).WhichOneof("event") is not None
    # The slow reader reads nothing while a fast caller is served.
    start = time.monotonic()
    assert_serving(api, stub)
    fast_s = time.monotonic() - start
    events = []
    for event in slow:
        events.append(event.WhichOneof("event"))
        time.sleep(0.05)
    assert events[-1] == "final_answer"
    assert fast_s < 30, f"a 4-token Generate took {fast_s:.1f} s beside a slow reader"


def test_a_thousand_concurrent_streams_all_end_cleanly(api, stub, server):
    """1000 Generate streams at once on one connection, on a server that
    admits them all (--max-queued-requests 1000): every one gets its answer;
    none hangs, fails or is refused."""
    request = generate(api, "Say hi.", 2)

    async def run_all():
        async with grpc.aio.insecure_channel(server.address) as channel:
            aio_stub = api.grpc.ConclaveStub(channel)

            async def one():
                try:
                    finals = [r async for r in aio_stub.Generate(request, timeout=CALL_TIMEOUT_S)
                              if r.HasField("final")]
                    return grpc.StatusCode.OK if len(finals) == 1 else "no final"
                except grpc.aio.AioRpcError as e:
                    if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        assert e.details(), "RESOURCE_EXHAUSTED without a message"
                    return e.code()

            return await asyncio.gather(*(one() for _ in range(1000)))

    codes = asyncio.run(asyncio.wait_for(run_all(), timeout=CALL_TIMEOUT_S + 60))
    counts = {c: codes.count(c) for c in set(codes)}
    assert counts == {grpc.StatusCode.OK: 1000}, counts


def test_sigterm_under_load_drains_every_admitted_request(api, start_server):
    """Calls that got their first event before SIGTERM all finish with their
    final message; the server exits 0 once they have."""
    server = start_server("--shutdown-grace-seconds", "60", "--max-agents", "4")
    results = {}
    started = threading.Barrier(7, timeout=CALL_TIMEOUT_S)
    with grpc.insecure_channel(server.address) as channel:
        stub = api.grpc.ConclaveStub(channel)

        def run(i):
            if i < 4:
                call = stub.Generate(generate(api, f"Count to {10 + i} in words.", 40),
                                     timeout=CALL_TIMEOUT_S)
                last = "final"
            else:
                call = stub.Contemplate(contemplate(api, 4, 40), timeout=CALL_TIMEOUT_S)
                last = "final_answer"
            try:
                next(call)
                started.wait()
                ends = [m.WhichOneof("event") for m in call]
                results[i] = "ok" if ends and ends[-1] == last else f"ended with {ends[-1:]}"
            except grpc.RpcError as e:
                results[i] = e.code()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        started.wait()
        server.terminate()
        for t in threads:
            t.join(timeout=CALL_TIMEOUT_S)
    assert results == {i: "ok" for i in range(6)}
    assert server.wait(timeout=60) == 0, server.log()


def test_a_kv_pool_too_small_for_the_load_preempts_and_completes_everything(api, start_server):
    # 4 MiB holds about 11 blocks (176 positions) of the default model; six
    # 64-token answers and a four-agent contemplation need several times that.
    server = start_server("--kv-cache-mib", "4", "--max-agents", "4")
    with grpc.insecure_channel(server.address) as channel:
        stub = api.grpc.ConclaveStub(channel)
        calls = [stub.Generate(generate(api, f"Write a short poem about the number {i}.", 64),
                               timeout=CALL_TIMEOUT_S) for i in range(6)]
        calls.append(stub.Contemplate(contemplate(api, 4, 64), timeout=CALL_TIMEOUT_S))
        for call in calls:
            assert len(list(call)) > 0
        assert metric(server, "conclave_num_preemptions_total") > 0
        # One request that can never fit is refused, not queued forever.
        with pytest.raises(grpc.RpcError) as error:
            list(stub.Generate(generate(api, "Hello.", 1000), timeout=CALL_TIMEOUT_S))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "KV" in error.value.details()
        assert_idle(server)
        assert_serving(api, stub)

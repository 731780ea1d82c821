"""The public gRPC API of build/bin/conclave-server, through a real grpcio
client: Generate streaming (instant and thinking), validation errors, health,
reflection, ListModels, cancellation, graceful shutdown on SIGTERM and a bad
model file. Every call has a deadline."""

import shutil
import subprocess
import threading

import pytest

grpc = pytest.importorskip("grpc")

CALL_TIMEOUT_S = 120
# A raw prompt the model keeps continuing (counting), so a request is still
# running when a test interrupts it.
ENDLESS_PROMPT = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"


def ask(api, question, max_tokens, **request):
    return api.pb.GenerateRequest(
        messages=[api.pb.ChatMessage(role=api.pb.ROLE_USER, content=question)],
        max_tokens=max_tokens,
        sampling=api.pb.SamplingParams(temperature=0.0),
        **request)


def collect(responses):
    """(deltas, final) of a whole Generate stream."""
    deltas, final = [], None
    for response in responses:
        assert final is None, "a message after the final one"
        if response.HasField("delta"):
            deltas.append(response.delta)
        else:
            final = response.final
    return deltas, final


def test_generate_streams_deltas_then_a_final_message(api, stub):
    deltas, final = collect(stub.Generate(ask(api, "Name three colors.", 24),
                                          timeout=CALL_TIMEOUT_S))
    assert deltas, "no text streamed"
    assert all(d.segment == api.pb.SEGMENT_ANSWER for d in deltas)
    text = "".join(d.text for d in deltas)
    token_ids = [t for d in deltas for t in d.token_ids]
    assert text.strip()
    assert final is not None
    assert final.finish_reason in (api.pb.FINISH_REASON_STOP, api.pb.FINISH_REASON_LENGTH)
    assert final.usage.generated_tokens == len(token_ids) <= 24
    assert final.usage.prompt_tokens > 0
    assert final.model == "SmolLM2-135M-Instruct.Q4_1"
    assert final.request_id


def test_greedy_generation_is_reproducible(api, stub):
    first = collect(stub.Generate(ask(api, "What is the capital of France?", 16),
                                  timeout=CALL_TIMEOUT_S))
    second = collect(stub.Generate(ask(api, "What is the capital of France?", 16),
                                   timeout=CALL_TIMEOUT_S))
    ids = lambda deltas: [t for d in deltas for t in d.token_ids]  # noqa: E731
    assert ids(first[0]) == ids(second[0])
    # The second prompt comes from the prefix cache.
    assert second[1].usage.cached_prompt_tokens > 0


def test_thinking_mode_streams_thinking_then_answer(api, stub):
    request = ask(api, "What is 17 + 25?", 40, mode=api.pb.MODE_THINKING, thinking_budget=12)
    deltas, final = collect(stub.Generate(request, timeout=CALL_TIMEOUT_S))
    segments = [d.segment for d in deltas]
    assert segments[0] == api.pb.SEGMENT_THINKING
    assert api.pb.SEGMENT_ANSWER in segments
    first_answer = segments.index(api.pb.SEGMENT_ANSWER)
    assert all(s == api.pb.SEGMENT_ANSWER for s in segments[first_answer:])
    assert 1 <= final.usage.thinking_tokens <= 12
    assert final.usage.thinking_tokens < final.usage.generated_tokens <= 40
    assert final.thinking_end != api.pb.THINKING_END_UNSPECIFIED


@pytest.mark.parametrize("mutate, field", [
    (lambda r, pb: r.ClearField("messages"), "messages is empty"),
    (lambda r, pb: r.messages.add(role_name="wizard", content="hi"), "role_name \"wizard\""),
    (lambda r, pb: r.sampling.MergeFrom(pb.SamplingParams(temperature=-1.0)),
     "sampling.temperature=-1"),
    (lambda r, pb: r.sampling.MergeFrom(pb.SamplingParams(top_p=0.0)), "sampling.top_p=0"),
    (lambda r, pb: r.sampling.MergeFrom(pb.SamplingParams(logprobs=21)), "sampling.logprobs=21"),
    (lambda r, pb: setattr(r, "model", "no-such-model"), "model \"no-such-model\""),
    (lambda r, pb: setattr(r, "thinking_budget", 3), "thinking_budget"),
    (lambda r, pb: setattr(r, "mode", pb.MODE_CONTEMPLATING), "Contemplate"),
    (lambda r, pb: r.messages[0].MergeFrom(pb.ChatMessage(content="word " * 600)),
     "max_prompt_tokens=512"),
], ids=["no-messages", "unknown-role", "temperature", "top-p", "logprobs", "model",
        "thinking-budget-in-instant", "contemplating-mode", "prompt-too-long"])
def test_invalid_requests_get_invalid_argument_naming_the_field(api, stub, mutate, field):
    request = ask(api, "hi", 4)
    mutate(request, api.pb)
    with pytest.raises(grpc.RpcError) as error:
        collect(stub.Generate(request, timeout=CALL_TIMEOUT_S))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.value.details()


def test_contemplate_checks_agents_against_max_agents(api, stub):
    request = api.pb.ContemplateRequest(
        messages=[api.pb.ChatMessage(role=api.pb.ROLE_USER, content="What is 6 * 7?")], agents=5)
    with pytest.raises(grpc.RpcError) as error:
        list(stub.Contemplate(request, timeout=CALL_TIMEOUT_S))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "agents=5 must be in [1, 4]" in error.value.details()


def test_contemplate_streams_agents_and_a_final_answer(api, stub):
    pb = api.pb
    request = pb.ContemplateRequest(
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content="What is 6 * 7?")], agents=3,
        aggregator=pb.AGGREGATOR_MAJORITY, answer_format=pb.ANSWER_FORMAT_NUMBER, max_tokens=48,
        seed=5, stream_agent_text=True)
    events = list(stub.Contemplate(request, timeout=CALL_TIMEOUT_S))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[:3] == ["agent_started"] * 3
    assert kinds.count("agent_finished") == 3
    assert kinds[-1] == "final_answer" and kinds.count("final_answer") == 1
    assert "agent_text" in kinds
    text = {}
    for e in events:
        if e.WhichOneof("event") == "agent_text":
            text[e.agent_text.agent] = text.get(e.agent_text.agent, "") + e.agent_text.text
    final = events[-1].final_answer
    assert final.seed == 5
    assert final.usage.generated_tokens == final.usage.agent_tokens
    finished = [e.agent_finished for e in events if e.WhichOneof("event") == "agent_finished"]
    assert final.usage.agent_tokens == sum(f.tokens for f in finished)
    assert sum(v.votes for v in final.votes) == sum(f.has_answer for f in finished)
    # The shared prompt (about 60 tokens) was prefilled once for the three agents.
    assert final.usage.prompt_tokens < 100
    assert set(text) <= {0, 1, 2}


def test_list_models(api, stub):
    response = stub.ListModels(api.pb.ListModelsRequest(), timeout=CALL_TIMEOUT_S)
    assert len(response.models) == 1
    model = response.models[0]
    assert model.id == "SmolLM2-135M-Instruct.Q4_1"
    assert model.architecture == "llama"
    assert model.context_length == 8192
    assert model.max_agents == 4
    assert model.chat_format == "chatml-smollm"
    assert model.quantization == "Q4_1"


def test_health_is_serving(channel):
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "conclave.v1.Conclave"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service),
                             timeout=CALL_TIMEOUT_S)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_the_services_and_resolves_the_api(channel):
    pytest.importorskip("grpc_reflection")
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase)

    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {"conclave.v1.Conclave", "grpc.health.v1.Health"} <= services
    pool = DescriptorPool(database)
    service = pool.FindServiceByName("conclave.v1.Conclave")
    assert {m.name for m in service.methods} == {"Generate", "Contemplate", "ListModels"}
    assert service.file.name == "conclave/v1/conclave.proto"
    request = pool.FindMessageTypeByName("conclave.v1.GenerateRequest")
    assert "thinking_budget" in request.fields_by_name


def test_cancelled_stream_leaves_the_server_serving(api, stub):
    request = api.pb.GenerateRequest(prompt=ENDLESS_PROMPT, max_tokens=2000,
                                     sampling=api.pb.SamplingParams(temperature=0.0))
    call = stub.Generate(request, timeout=CALL_TIMEOUT_S)
    first = next(call)
    assert first.HasField("delta")
    call.cancel()
    with pytest.raises(grpc.RpcError) as error:
        collect(call)
    assert error.value.code() == grpc.StatusCode.CANCELLED
    deltas, final = collect(stub.Generate(ask(api, "Say hi.", 8), timeout=CALL_TIMEOUT_S))
    assert final is not None


def test_deadline_exceeded(api, stub):
    request = api.pb.GenerateRequest(prompt=ENDLESS_PROMPT, max_tokens=2000,
                                     sampling=api.pb.SamplingParams(temperature=0.0))
    with pytest.raises(grpc.RpcError) as error:
        collect(stub.Generate(request, timeout=0.3))
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_sigterm_lets_a_short_stream_finish_then_exits_zero(api, start_server):
    server = start_server("--shutdown-grace-seconds", "30")
    with grpc.insecure_channel(server.address) as channel:
        stub = api.grpc.ConclaveStub(channel)
        call = stub.Generate(ask(api, "Count from one to ten in words.", 48),
                             timeout=CALL_TIMEOUT_S)
        first = next(call)
        server.terminate()
        deltas, final = collect(call)
        assert final is not None, "the running stream was cut instead of drained"
        assert [first.delta] + deltas
    assert server.wait(timeout=30) == 0, server.log()


def test_sigterm_cancels_a_long_stream_after_the_grace_period_and_exits_zero(api, start_server):
    server = start_server("--shutdown-grace-seconds", "1")
    outcome = {}
    with grpc.insecure_channel(server.address) as channel:
        stub = api.grpc.ConclaveStub(channel)
        request = api.pb.GenerateRequest(prompt=ENDLESS_PROMPT, max_tokens=2000,
                                         sampling=api.pb.SamplingParams(temperature=0.0))
        call = stub.Generate(request, timeout=CALL_TIMEOUT_S)
        assert next(call).HasField("delta")

        def drain():
            try:
                collect(call)
                outcome["code"] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                outcome["code"] = e.code()

        reader = threading.Thread(target=drain)
        reader.start()
        server.terminate()
        assert server.wait(timeout=15) == 0, server.log()
        reader.join(timeout=15)
    assert outcome.get("code") in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


def test_a_truncated_model_file_is_refused_with_exit_status_1(tmp_path, server_paths):
    truncated = tmp_path / "truncated.gguf"
    with open(server_paths.model, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read(4096))
    result = subprocess.run(
        [str(server_paths.binary), "--model", str(truncated), "--grpc-port", "0"],
        capture_output=True, timeout=60)
    assert result.returncode == 1
    assert b"truncated.gguf" in result.stderr
    assert b"listening" not in result.stdout


def test_a_bf16_kv_cache_serves_generate(api, start_server):
    server = start_server("--kv-dtype", "bf16")
    assert "kv_dtype=bf16" in server.log()
    with grpc.insecure_channel(server.address) as channel:
        stub = api.grpc.ConclaveStub(channel)
        deltas, final = collect(stub.Generate(ask(api, "Name three colors.", 16),
                                              timeout=CALL_TIMEOUT_S))
    assert final is not None and final.usage.generated_tokens == len(
        [t for d in deltas for t in d.token_ids]) > 0


def test_an_unknown_kv_dtype_is_refused_with_exit_status_1(server_paths):
    result = subprocess.run(
        [str(server_paths.binary), "--model", str(server_paths.model), "--grpc-port", "0",
         "--metrics-port", "-1", "--kv-dtype", "fp8"], capture_output=True, timeout=60)
    assert result.returncode == 1
    assert b"fp8" in result.stderr
    assert b"listening" not in result.stdout


def test_grpcurl_style_discovery_needs_no_proto_files(server):
    """grpcurl, when installed, lists the services through reflection."""
    grpcurl = shutil.which("grpcurl")
    if grpcurl is None:
        pytest.skip("grpcurl not installed")
    listed = subprocess.run([grpcurl, "-plaintext", server.address, "list"],
                            capture_output=True, text=True, timeout=30)
    assert "conclave.v1.Conclave" in listed.stdout

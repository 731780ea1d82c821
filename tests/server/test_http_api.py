"""The OpenAI-compatible HTTP endpoint of build/bin/conclave-server (open
mode), through the official `openai` client and through curl: chat
completions (plain, streaming, n > 1, stop strings, seeds, logprobs,
max_tokens), /v1/models, contemplations, OpenAI error bodies (validation,
unknown model, malformed JSON, invalid UTF-8, oversized bodies, wrong content
type, unknown routes and methods), a client that goes away mid-stream (its
KV blocks are freed), the concurrency limit shared with gRPC, and SIGTERM.
Every call has a deadline and every wait is bounded."""

import json
import threading

import pytest

import conclave_api
from engine_checks import metric
from http_helpers import (CALL_TIMEOUT_S, ENDLESS, curl, error_of, openai_client,
                          post_json, sse_events, user, wait_until)

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"


@pytest.fixture
def client(server):
    return openai_client(server)


def completions(client):
    """client.chat.completions.create for the served model."""
    return lambda **kwargs: client.chat.completions.create(**{"model": MODEL_ID, **kwargs})


@pytest.fixture
def chat(client):
    return completions(client)


def test_a_chat_completion_has_openais_shape(chat):
    r = chat(messages=user("Name three colors."), max_tokens=24, temperature=0)
    assert r.id.startswith("chatcmpl-")
    assert r.object == "chat.completion"
    assert r.model == MODEL_ID
    assert r.created > 1_600_000_000
    [choice] = r.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert choice.logprobs is None
    assert 0 < r.usage.completion_tokens <= 24
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_sends_the_role_then_deltas_then_the_finish_and_usage(chat):
    messages = user("What is the capital of France?")
    whole = chat(messages=messages, max_tokens=16, temperature=0)
    chunks = list(chat(
        messages=messages, max_tokens=16, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content  # greedy: the same answer either way
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_n_samples_separate_sequences_of_one_prompt(chat):
    r = chat(messages=user("Write a word."), n=3, max_tokens=8, temperature=1.0, seed=11)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.finish_reason in ("stop", "length") for c in r.choices)
    assert len({c.message.content for c in r.choices}) > 1, "three samples, one text"
    # The prompt is prefilled once for all of them; every sample's tokens count.
    assert 3 <= r.usage.completion_tokens <= 24
    again = chat(messages=user("Write a word."), n=3, max_tokens=8, temperature=1.0, seed=11)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]


def test_n_streams_every_choice(chat):
    chunks = list(chat(messages=user("Say hi."), n=2, max_tokens=6, temperature=1.0, seed=3,
                       stream=True))
    roles = [c.choices[0].index for c in chunks if c.choices[0].delta.role == "assistant"]
    assert roles == [0, 1]
    finished = sorted(c.choices[0].index for c in chunks if c.choices[0].finish_reason)
    assert finished == [0, 1]


def test_a_stop_string_ends_the_answer_before_it(chat):
    messages = user("Name three colors.")
    full = chat(messages=messages, max_tokens=32, temperature=0)
    text = full.choices[0].message.content
    assert len(text) >= 8, text
    # Two characters from the middle of the greedy answer.
    stop = text[len(text) // 2:len(text) // 2 + 2]
    cut = chat(messages=messages, max_tokens=32, temperature=0, stop=[stop, "never appears"])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[:text.index(stop)]
    assert cut.usage.completion_tokens < full.usage.completion_tokens


def test_the_same_seed_gives_the_same_text(chat):
    def sample(seed):
        r = chat(messages=user("Tell me a story."), max_tokens=24, temperature=1.0, seed=seed)
        return r.choices[0].message.content
    first = sample(1234)
    assert sample(1234) == first
    assert any(sample(seed) != first for seed in (1, 2, 3)), "the seed changes nothing"


def test_logprobs_report_each_token_and_its_alternatives(chat):
    r = chat(messages=user("Name a fruit."), max_tokens=8, temperature=0, logprobs=True,
             top_logprobs=3)
    content = r.choices[0].logprobs.content
    # Every generated token but the end-of-generation one, which has no text.
    ends = 1 if r.choices[0].finish_reason == "stop" else 0
    assert len(content) == r.usage.completion_tokens - ends > 0
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token
        assert len(t.top_logprobs) == 3
        tops = [a.logprob for a in t.top_logprobs]
        assert all(lp <= 0 for lp in tops) and tops == sorted(tops, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert t.token == t.top_logprobs[0].token and t.logprob == pytest.approx(tops[0])
    streamed = list(chat(
        messages=user("Name a fruit."), max_tokens=8, temperature=0, logprobs=True,
        top_logprobs=3, stream=True))
    tokens = [t.token for c in streamed if c.choices[0].logprobs
              for t in c.choices[0].logprobs.content]
    assert tokens == [t.token for t in content]


def test_max_tokens_ends_with_finish_reason_length(chat):
    r = chat(messages=user(ENDLESS), max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    r = chat(messages=user(ENDLESS), max_completion_tokens=2, temperature=0)
    assert r.usage.completion_tokens == 2


def test_models_lists_and_retrieves_the_served_model(client):
    [model] = client.models.list().data
    assert model.id == MODEL_ID and model.object == "model" and model.owned_by == "conclave"
    assert client.models.retrieve(MODEL_ID).id == MODEL_ID
    with pytest.raises(openai.NotFoundError) as error:
        client.models.retrieve("gpt-4o")
    assert error.value.code == "model_not_found"


def test_another_model_is_not_found(chat):
    with pytest.raises(openai.NotFoundError) as error:
        chat(model="gpt-4o", messages=user("Hi"), max_tokens=4)
    assert error.value.code == "model_not_found" and error.value.param == "model"
    assert MODEL_ID in error.value.message


def test_validation_errors_are_400_naming_the_field(chat):
    with pytest.raises(openai.BadRequestError) as error:
        chat(messages=[], max_tokens=4)
    assert error.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as error:
        chat(messages=user("Hi"), temperature=3.0)
    assert error.value.param == "temperature" and "[0, 2]" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:
        chat(messages=user("Hi"), n=5)  # --max-agents 4
    assert error.value.param == "n"
    with pytest.raises(openai.BadRequestError) as error:
        chat(
            messages=user("Hi"), tools=[{"type": "function", "function": {"name": "f"}}])
    assert error.value.param == "tools" and "not supported" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:
        chat(messages=user("Hi"), response_format={"type": "json_object"})
    assert error.value.param == "response_format"
    # The prompt is too long for --max-prompt-tokens 512: still a plain 400
    # when streaming, as it is found before the first token.
    with pytest.raises(openai.BadRequestError) as error:
        list(chat(messages=user("word " * 2000), max_tokens=4, stream=True))
    assert "max_prompt_tokens=512" in error.value.message


def test_a_body_without_messages_is_400_with_param(server):
    status, _, body = post_json(server, "/v1/chat/completions", {"max_tokens": 4})
    assert status == 400
    error = error_of(body)
    assert error["param"] == "messages" and error["type"] == "invalid_request_error"


def test_curl_reads_the_stream_as_server_sent_events(server):
    status, headers, body = post_json(
        server, "/v1/chat/completions",
        {"messages": user("Say hello."), "max_tokens": 8, "temperature": 0, "stream": True},
        "-N")
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = sse_events(body)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_malformed_json_and_invalid_utf8_are_400(server):
    status, _, body = post_json(server, "/v1/chat/completions", b'{"messages": [')
    assert status == 400 and "not valid JSON" in error_of(body)["message"]
    status, _, body = post_json(server, "/v1/chat/completions",
                                b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}')
    assert status == 400 and "not valid UTF-8" in error_of(body)["message"]
    status, _, body = post_json(server, "/v1/contemplations", b"[1, 2]")
    assert status == 400 and "JSON object" in error_of(body)["message"]


def test_an_oversized_body_is_413_with_or_without_expect_and_chunked(server):
    big = json.dumps({"messages": user("x" * (1 << 20))}).encode()
    for extra in ((), ("-H", "Expect:"), ("-H", "Transfer-Encoding: chunked")):
        status, headers, body = post_json(server, "/v1/chat/completions", big, *extra)
        assert status == 413, extra
        assert error_of(body)["code"] == "request_too_large"
    # Just under the limit is read (and then refused for what it says).
    status, _, body = post_json(server, "/v1/chat/completions",
                                json.dumps({"messages": user("x" * 1000), "n": 99}).encode())
    assert status == 400 and error_of(body)["param"] == "n"


def test_a_body_that_is_not_json_is_415(server):
    status, _, body = curl("-X", "POST", f"http://{server.http_address}/v1/chat/completions",
                           "-H", "Content-Type: text/plain", data=b"{}")
    assert status == 415 and error_of(body)["code"] == "unsupported_media_type"
    status, _, _ = curl("-X", "POST", f"http://{server.http_address}/v1/chat/completions",
                        "-d", "messages=hi")  # curl's default: a form
    assert status == 415


def test_unknown_routes_are_404_and_wrong_methods_405(server):
    status, _, body = curl(f"http://{server.http_address}/v1/completions")
    assert status == 404 and error_of(body)["code"] == "unknown_url"
    status, headers, body = curl(f"http://{server.http_address}/v1/chat/completions")
    assert status == 405 and headers["allow"] == "POST"
    assert error_of(body)["code"] == "method_not_allowed"
    status, headers, _ = curl("-X", "DELETE", f"http://{server.http_address}/v1/models")
    assert status == 405 and "GET" in headers["allow"]


def test_a_contemplation_answers_with_votes_usage_and_agents(server):
    status, _, body = post_json(server, "/v1/contemplations", {
        "messages": [{"role": "user", "content": "What is 2 + 2?"}], "agents": 2,
        "max_tokens": 24, "seed": 3, "answer_format": "ANSWER_FORMAT_NUMBER",
        "aggregator": "AGGREGATOR_MAJORITY"})
    assert status == 200, body
    r = json.loads(body)
    assert r["object"] == "contemplation" and r["model"] == MODEL_ID
    final = r["final_answer"]
    assert final["aggregator"] == "AGGREGATOR_MAJORITY"
    assert sum(v["votes"] for v in final["votes"]) <= 2
    assert final["usage"]["agent_tokens"] > 0 and final["seed"] == "3"
    assert r["id"] == f"contemplation-{final['request_id']}"
    assert [a["agent"] for a in r["agents"]] == [0, 1]
    for agent in r["agents"]:
        assert agent["status"] in ("finished", "stopped")
        assert agent["tokens"] > 0 and "confidence" in agent


def test_a_streamed_contemplation_sends_every_event_then_done(server):
    status, headers, body = post_json(server, "/v1/contemplations", {
        "messages": [{"role": "user", "content": "What is 3 + 4?"}], "agents": 2,
        "max_tokens": 16, "seed": 5, "stream": True, "stream_agent_text": True}, "-N")
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse_events(body)
    assert events[-1] == "[DONE]"
    kinds = [next(iter(e)) for e in events[:-1]]
    assert kinds[-1] == "final_answer"
    assert kinds.count("agent_started") == 2
    assert "agent_text" in kinds
    assert kinds.count("agent_finished") + kinds.count("agent_stopped") >= 2


def test_contemplation_validation_is_the_grpc_apis(server):
    status, _, body = post_json(server, "/v1/contemplations",
                                {"messages": user("2+2?"), "agents": 9})
    assert status == 400
    error = error_of(body)
    assert error["param"] == "agents" and "--max-agents" in error["message"]
    status, _, body = post_json(server, "/v1/contemplations",
                                {"messages": user("2+2?"), "agent": 2})
    assert status == 400 and error_of(body)["param"] == "agent"


def test_a_client_that_goes_away_mid_stream_frees_its_kv_blocks(server):
    wait_until(lambda: metric(server, "conclave_kv_blocks_used") == 0, 30, "blocks held at start")
    body = {"messages": user(ENDLESS), "max_tokens": 2000, "temperature": 0, "stream": True}
    with httpx.Client(timeout=CALL_TIMEOUT_S) as http:
        with http.stream("POST", f"http://{server.http_address}/v1/chat/completions",
                         json=body) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            seen = 0
            for line in lines:
                seen += line.startswith("data: ")
                if seen >= 4:
                    break
            # Running: its blocks are held.
            wait_until(lambda: metric(server, "conclave_kv_blocks_used") > 0, 30,
                       "no KV block held while streaming")
        # The connection is closed here, with 2000 tokens still to go.
    wait_until(lambda: metric(server, "conclave_kv_blocks_used") == 0, 30,
               "the abandoned request kept its KV blocks")
    wait_until(lambda: "status=CANCELLED" in server.log(), 10, "no cancellation logged")


def test_one_concurrency_limit_bounds_both_transports(api, start_server):
    grpc = pytest.importorskip("grpc")
    server = start_server("--max-concurrent-requests", "1")
    client = openai_client(server)
    chat = completions(client)
    stream = chat(messages=user(ENDLESS), max_tokens=2000, temperature=0, stream=True)
    next(iter(stream))  # running
    with grpc.insecure_channel(server.address) as channel:
        stub = api.grpc.ConclaveStub(channel)
        request = api.pb.GenerateRequest(
            messages=[api.pb.ChatMessage(role=api.pb.ROLE_USER, content="Hi")], max_tokens=4)
        with pytest.raises(grpc.RpcError) as error:
            list(stub.Generate(request, timeout=CALL_TIMEOUT_S))
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(openai.RateLimitError) as limited:
            chat(messages=user("Hi"), max_tokens=4)
        assert "concurrent requests" in limited.value.message
        assert int(limited.value.response.headers["retry-after"]) >= 1
        stream.close()
        # The HTTP call's slot is free once its job has returned.

        def generate_works():
            try:
                list(stub.Generate(request, timeout=CALL_TIMEOUT_S))
                return True
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                return False
        wait_until(generate_works, 30, "the HTTP call never freed its slot")


def test_sigterm_drains_a_running_stream_and_refuses_new_connections(start_server):
    server = start_server("--shutdown-grace-seconds", "30")
    client = openai_client(server)
    chat = completions(client)
    stream = iter(chat(
        messages=user("Count from one to ten in words."), max_tokens=48, temperature=0,
        stream=True))
    first = next(stream)
    server.terminate()
    rest = list(stream)
    assert rest and rest[-1].choices[0].finish_reason in ("stop", "length"), \
        "the running stream was cut instead of drained"
    assert first.choices[0].delta.role == "assistant"
    with pytest.raises(openai.APIConnectionError):
        client.models.list()
    assert server.wait(timeout=30) == 0, server.log()


def test_sigterm_cancels_a_long_stream_after_the_grace_period(start_server):
    # A short grace: on a quiet machine the counting answer ends within a
    # second, and then the stream was drained rather than cancelled.
    server = start_server("--shutdown-grace-seconds", "0.2")
    client = openai_client(server)
    chat = completions(client)
    outcome = {}
    stream = chat(messages=user(ENDLESS), max_tokens=2000, temperature=0, stream=True)
    chunks = iter(stream)
    next(chunks)

    def drain():
        try:
            for _ in chunks:
                pass
            outcome["error"] = None
        except openai.APIError as e:
            outcome["error"] = e
    reader = threading.Thread(target=drain)
    reader.start()
    server.terminate()
    assert server.wait(timeout=30) == 0, server.log()
    reader.join(timeout=30)
    # The stream ends with an error event: the server is shutting down.
    assert outcome.get("error") is not None and "shutting down" in str(outcome["error"])
    assert "http server cancelling 1 calls" in server.log()

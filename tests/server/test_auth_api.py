"""API keys and per-key quotas through a real conclave-server started with
--api-keys on a temporary key store issued by build/bin/conclave keys issue
($CONCLAVE_BUILD_DIR/bin): authentication errors, revocation without a
restart, RESOURCE_EXHAUSTED with retry-after and recovery, per-key metrics,
prefix-cache isolation between keys, and open mode refused off loopback.
Every call has a deadline and every wait is bounded."""

import os
import subprocess
import time
import urllib.request
import uuid

import pytest

import conclave_api

grpc = pytest.importorskip("grpc")

CALL_TIMEOUT_S = 120
CLI_TIMEOUT_S = 30
# The server looks at the key store at most once a second (KeyStoreWatcher).
RELOAD_WAIT_S = 10
MODEL = conclave_api.REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
ENDLESS_PROMPT = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"


def conclave_cli():
    path = conclave_api.build_dir() / "bin" / "conclave"
    if not path.exists():
        pytest.skip(f"{path} not built")
    return path


def keys(*args):
    result = subprocess.run([str(conclave_cli()), "keys", *map(str, args)], capture_output=True,
                            text=True, timeout=CLI_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class Key:
    def __init__(self, store, name, *flags):
        self.secret_key = keys("issue", "--store", store, "--name", name, *flags)
        self.id = self.secret_key[4:16]
        self.secret = self.secret_key[17:]
        self.metadata = (("authorization", f"Bearer {self.secret_key}"),)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("keys") / "keys.json"


@pytest.fixture(scope="module")
def tenants(store):
    return {
        "alice": Key(store, "alice"),
        "bob": Key(store, "bob"),
        "carol": Key(store, "carol"),  # revoked by a test
        "solo": Key(store, "solo", "--max-concurrent", "1"),
        # 10 tokens a second: one request estimated at 590 leaves 10.
        "frugal": Key(store, "frugal", "--tokens-per-minute", "600"),
    }


def run_keyed_server(store, tenants, tmp_path_factory):
    """A server on the key store `store` for one module's tests (a
    generator for a fixture to yield from): once they are done it must
    exit 0, and its log must hold none of `tenants`' secrets."""
    binary = conclave_api.build_dir() / "bin" / "conclave-server"
    if not binary.exists():
        pytest.skip(f"{binary} not built")
    if not MODEL.exists():
        pytest.skip(f"model {MODEL.name} not present (scripts/fetch_models.sh)")
    log = tmp_path_factory.mktemp("server") / "server.log"
    proc = conclave_api.ServerProcess(
        MODEL, ["--threads", "2", "--kv-cache-mib", "64", "--api-keys", str(store),
                "--max-prompt-tokens", "512"], log, start_timeout=60, stop_timeout=20)
    yield proc
    assert proc.stop() == 0, proc.log()
    # The server never logs a secret.
    text = proc.log()
    for key in tenants.values():
        assert key.secret not in text


@pytest.fixture(scope="module")
def server(tenants, store, tmp_path_factory):
    yield from run_keyed_server(store, tenants, tmp_path_factory)


@pytest.fixture
def stub(api, server):
    with grpc.insecure_channel(server.address) as ch:
        grpc.channel_ready_future(ch).result(timeout=30)
        yield api.grpc.ConclaveStub(ch)


def ask(api, question, max_tokens=8):
    return api.pb.GenerateRequest(
        messages=[api.pb.ChatMessage(role=api.pb.ROLE_USER, content=question)],
        max_tokens=max_tokens, sampling=api.pb.SamplingParams(temperature=0.0))


def final_of(responses):
    final = None
    for response in responses:
        if response.HasField("final"):
            final = response.final
    assert final is not None
    return final


def rpc_error(fn):
    with pytest.raises(grpc.RpcError) as error:
        fn()
    return error.value


def counter(server, name, **labels):
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(value for n, l, value in conclave_api.read_metrics(server.metrics_address)
               if n == name and all(l.get(k) == v for k, v in labels.items()))


def test_calls_without_a_key_are_unauthenticated(api, stub):
    error = rpc_error(lambda: final_of(stub.Generate(ask(api, "Hi"), timeout=CALL_TIMEOUT_S)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in error.details()
    error = rpc_error(lambda: stub.ListModels(api.pb.ListModelsRequest(), timeout=30))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    request = api.pb.ContemplateRequest(
        messages=[api.pb.ChatMessage(role=api.pb.ROLE_USER, content="2+2?")], agents=2)
    error = rpc_error(lambda: list(stub.Contemplate(request, timeout=CALL_TIMEOUT_S)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_wrong_or_malformed_key_is_unauthenticated_and_never_echoed(api, stub, tenants):
    alice = tenants["alice"]
    wrong_secret = alice.secret[:-1] + ("a" if alice.secret[-1] != "a" else "b")
    wrong = f"cnk_{alice.id}_{wrong_secret}"
    for value in (f"Bearer {wrong}", "Bearer cnk_nope", f"Basic {alice.secret_key}",
                  alice.secret_key):
        error = rpc_error(lambda: stub.ListModels(api.pb.ListModelsRequest(), timeout=30,
                                                  metadata=(("authorization", value),)))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, value
        assert wrong_secret not in error.details() and alice.secret not in error.details()
    # Validation does not run before authentication: an invalid request
    # without a key is still UNAUTHENTICATED.
    error = rpc_error(lambda: final_of(stub.Generate(
        api.pb.GenerateRequest(max_tokens=-1), timeout=CALL_TIMEOUT_S)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_valid_key_can_generate_contemplate_and_list_models(api, stub, tenants):
    md = tenants["alice"].metadata
    models = stub.ListModels(api.pb.ListModelsRequest(), timeout=30, metadata=md)
    assert models.models[0].id == "SmolLM2-135M-Instruct.Q4_1"
    final = final_of(stub.Generate(ask(api, "Name a color."), timeout=CALL_TIMEOUT_S,
                                   metadata=md))
    assert final.usage.generated_tokens > 0
    request = api.pb.ContemplateRequest(
        messages=[api.pb.ChatMessage(role=api.pb.ROLE_USER, content="What is 2 + 2?")],
        agents=2, max_tokens=24, seed=3, answer_format=api.pb.ANSWER_FORMAT_NUMBER)
    events = list(stub.Contemplate(request, timeout=CALL_TIMEOUT_S, metadata=md))
    assert events[-1].WhichOneof("event") == "final_answer"
    # Validation still applies to authenticated calls.
    error = rpc_error(lambda: final_of(stub.Generate(
        api.pb.GenerateRequest(max_tokens=-1), timeout=CALL_TIMEOUT_S, metadata=md)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_cli_sends_the_key_from_the_environment_or_its_flag(server, tenants):
    def models(env_key=None, *flags):
        env = {k: v for k, v in os.environ.items() if k != "CONCLAVE_API_KEY"}
        if env_key is not None:
            env["CONCLAVE_API_KEY"] = env_key
        return subprocess.run([str(conclave_cli()), "--server", server.address, *flags, "models"],
                              capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=env)

    alice = tenants["alice"].secret_key
    without = models()
    assert without.returncode == 1 and "UNAUTHENTICATED" in without.stderr
    assert alice not in without.stderr
    with_env = models(alice)
    assert with_env.returncode == 0, with_env.stderr
    assert "SmolLM2-135M-Instruct.Q4_1" in with_env.stdout
    with_flag = models(None, "--api-key", alice)
    assert with_flag.returncode == 0, with_flag.stderr
    wrong = models(alice[:-4] + "xxxx")
    assert wrong.returncode == 1 and "UNAUTHENTICATED" in wrong.stderr


def test_health_needs_no_key(server):
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    with grpc.insecure_channel(server.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "conclave.v1.Conclave"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_revoked_key_is_refused_without_a_restart(api, stub, store, tenants):
    carol = tenants["carol"]
    stub.ListModels(api.pb.ListModelsRequest(), timeout=30, metadata=carol.metadata)
    keys("revoke", "--store", store, carol.id)
    deadline = time.monotonic() + RELOAD_WAIT_S
    while True:
        try:
            stub.ListModels(api.pb.ListModelsRequest(), timeout=30, metadata=carol.metadata)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "revoked" in error.details() and carol.secret not in error.details()
            break
        assert time.monotonic() < deadline, "the revocation did not take effect"
        time.sleep(0.2)
    # The other keys still work.
    stub.ListModels(api.pb.ListModelsRequest(), timeout=30, metadata=tenants["bob"].metadata)


def retry_after(error):
    trailers = dict(error.trailing_metadata() or ())
    assert "retry-after" in trailers, trailers
    return int(trailers["retry-after"])


def test_over_max_concurrent_is_resource_exhausted_with_retry_after_and_recovers(api, stub,
                                                                                tenants):
    md = tenants["solo"].metadata
    running = stub.Generate(api.pb.GenerateRequest(
        prompt=ENDLESS_PROMPT, max_tokens=400, sampling=api.pb.SamplingParams(temperature=0.0)),
        timeout=CALL_TIMEOUT_S, metadata=md)
    assert next(running).HasField("delta")
    error = rpc_error(lambda: final_of(stub.Generate(ask(api, "Hi"), timeout=CALL_TIMEOUT_S,
                                                     metadata=md)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_concurrent_requests=1" in error.details()
    assert retry_after(error) >= 1
    running.cancel()
    # The cancelled call's lease is released when its work returns.
    deadline = time.monotonic() + 20
    while True:
        try:
            final_of(stub.Generate(ask(api, "Hi"), timeout=CALL_TIMEOUT_S, metadata=md))
            break
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
            assert time.monotonic() < deadline, "the key did not recover"
            time.sleep(0.2)


def test_over_tokens_per_minute_is_resource_exhausted_and_the_unused_estimate_returns(
        api, stub, tenants):
    md = tenants["frugal"].metadata
    # Estimated at 10 (40 prompt bytes / 4) + 580 = 590 of the key's 600.
    running = stub.Generate(api.pb.GenerateRequest(
        prompt=ENDLESS_PROMPT, max_tokens=580, sampling=api.pb.SamplingParams(temperature=0.0)),
        timeout=CALL_TIMEOUT_S, metadata=md)
    assert next(running).HasField("delta")
    # Estimated at 1 + 200: the 10 left refill at 10 a second, so it cannot
    # fit for 19 s, however slowly the first call started.
    error = rpc_error(lambda: final_of(stub.Generate(ask(api, "Hi", max_tokens=200),
                                                     timeout=CALL_TIMEOUT_S, metadata=md)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "tokens_per_minute=600" in error.details()
    assert 1 <= retry_after(error) <= 60
    # Cancelled after a few tokens: what it did not use goes back at once.
    running.cancel()
    deadline = time.monotonic() + 20
    while True:
        try:
            final_of(stub.Generate(ask(api, "Hi", max_tokens=200), timeout=CALL_TIMEOUT_S,
                                   metadata=md))
            break
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
            assert time.monotonic() < deadline, "the key did not recover"
            time.sleep(0.2)


def test_per_key_metrics_carry_the_key_id_and_never_the_secret(api, stub, server, tenants):
    bob = tenants["bob"]
    missing = counter(server, "conclave_auth_rejections_total", reason="missing_key")
    rpc_error(lambda: stub.ListModels(api.pb.ListModelsRequest(), timeout=30))
    assert counter(server, "conclave_auth_rejections_total", reason="missing_key") == missing + 1
    before = counter(server, "conclave_key_generation_tokens_total", key_id=bob.id)
    final = final_of(stub.Generate(ask(api, "Name a fruit."), timeout=CALL_TIMEOUT_S,
                                   metadata=bob.metadata))
    prompt = counter(server, "conclave_key_prompt_tokens_total", key_id=bob.id)
    generated = counter(server, "conclave_key_generation_tokens_total", key_id=bob.id)
    assert generated - before == final.usage.generated_tokens
    assert prompt >= final.usage.prompt_tokens
    assert counter(server, "conclave_key_requests_total", key_id=bob.id, code="OK") >= 1
    with urllib.request.urlopen(f"http://{server.metrics_address}/metrics", timeout=10) as r:
        text = r.read().decode("utf-8")
    for key in tenants.values():
        assert f'key_id="{key.id}"' in text
        assert key.secret not in text


def test_one_tenant_never_hits_another_tenants_cached_prefix(api, stub, server, tenants):
    # A raw prompt (no chat template, whose system prompt every call shares)
    # that no earlier call used, long enough for several full blocks.
    text = (f"Reference {uuid.uuid4().hex}. " +
            "The history of the printing press in Europe begins in Mainz. " * 6)

    def ask(api, _text, max_tokens):
        return api.pb.GenerateRequest(prompt=text, max_tokens=max_tokens,
                                      sampling=api.pb.SamplingParams(temperature=0.0))
    question = text
    first = final_of(stub.Generate(ask(api, question, 4), timeout=CALL_TIMEOUT_S,
                                   metadata=tenants["alice"].metadata))
    assert first.usage.cached_prompt_tokens == 0
    hits = counter(server, "conclave_prefix_cache_hits_total")
    other = final_of(stub.Generate(ask(api, question, 4), timeout=CALL_TIMEOUT_S,
                                   metadata=tenants["bob"].metadata))
    assert other.usage.cached_prompt_tokens == 0
    assert counter(server, "conclave_prefix_cache_hits_total") == hits
    again = final_of(stub.Generate(ask(api, question, 4), timeout=CALL_TIMEOUT_S,
                                   metadata=tenants["alice"].metadata))
    assert again.usage.cached_prompt_tokens > 0
    assert counter(server, "conclave_prefix_cache_hits_total") > hits


def test_open_mode_off_loopback_refuses_to_start(server_paths):
    result = subprocess.run(
        [str(server_paths.binary), "--model", str(server_paths.model), "--bind", "0.0.0.0",
         "--grpc-port", "0", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""  # never got as far as listening
    assert "--api-keys" in result.stderr and "loopback" in result.stderr


def test_a_missing_key_store_refuses_to_start(server_paths, tmp_path):
    result = subprocess.run(
        [str(server_paths.binary), "--model", str(server_paths.model), "--bind", "127.0.0.1",
         "--grpc-port", "0", "--metrics-port", "0", "--api-keys", str(tmp_path / "none.json")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "none.json" in result.stderr

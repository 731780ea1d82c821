"""API keys and per-key quotas on the HTTP endpoint of a real
conclave-server started with --api-keys (keys issued with build/bin/conclave
keys issue): 401 without or with a wrong key, 403 for a revoked one, 429 with
Retry-After over a quota, per-key metrics and usage as for gRPC, and
prefix-cache isolation between keys. Every call has a deadline and every
wait is bounded."""

import pytest

from engine_checks import metric
from http_helpers import CALL_TIMEOUT_S, ENDLESS, openai_client, user, wait_until
from test_auth_api import Key, keys, run_keyed_server

openai = pytest.importorskip("openai")

MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"
# The server looks at the key store at most once a second (KeyStoreWatcher).
RELOAD_WAIT_S = 10


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("http_keys") / "keys.json"


@pytest.fixture(scope="module")
def tenants(store):
    return {
        "alice": Key(store, "alice"),
        "carol": Key(store, "carol"),  # revoked by a test
        "solo": Key(store, "solo", "--max-concurrent", "1"),
        # Used only by the cache isolation test: nothing is cached under them.
        "dora": Key(store, "dora"),
        "erin": Key(store, "erin"),
    }


@pytest.fixture(scope="module")
def server(tenants, store, tmp_path_factory):
    yield from run_keyed_server(store, tenants, tmp_path_factory)


def chat(client, **kwargs):
    return client.chat.completions.create(**{"model": MODEL_ID, "max_tokens": 4,
                                             "temperature": 0, **kwargs})


def test_calls_without_a_key_are_401(server):
    client = openai_client(server, api_key="")
    with pytest.raises(openai.AuthenticationError) as error:
        chat(client, messages=user("Hi"))
    assert "Bearer" in error.value.message and error.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_a_wrong_or_malformed_key_is_401_and_never_echoed(server, tenants):
    alice = tenants["alice"]
    wrong_secret = alice.secret[:-1] + ("a" if alice.secret[-1] != "a" else "b")
    for key in (f"cnk_{alice.id}_{wrong_secret}", "cnk_nope", "sk-proj-123"):
        client = openai_client(server, api_key=key)
        with pytest.raises(openai.AuthenticationError) as error:
            chat(client, messages=user("Hi"))
        assert wrong_secret not in error.value.message and alice.secret not in error.value.message
    # The key is checked before the body: an invalid body without a key is 401.
    with pytest.raises(openai.AuthenticationError):
        chat(openai_client(server, api_key=""), messages=[])


def test_a_valid_key_can_chat_contemplate_and_list_models(server, tenants):
    client = openai_client(server, api_key=tenants["alice"].secret_key)
    assert client.models.list().data[0].id == MODEL_ID
    assert chat(client, messages=user("Name a color.")).usage.completion_tokens > 0
    r = client.post("/contemplations", cast_to=object, body={
        "messages": [{"role": "user", "content": "What is 2 + 2?"}], "agents": 2,
        "max_tokens": 16, "seed": 3})
    assert r["final_answer"]["usage"]["agent_tokens"] > 0
    # Validation still applies to authenticated calls.
    with pytest.raises(openai.BadRequestError):
        chat(client, messages=[])


def test_a_revoked_key_is_403_without_a_restart(server, store, tenants):
    carol = tenants["carol"]
    client = openai_client(server, api_key=carol.secret_key)
    client.models.list()
    keys("revoke", "--store", store, carol.id)

    def refused():
        try:
            client.models.list()
            return False
        except openai.PermissionDeniedError as error:
            assert "revoked" in error.message and carol.secret not in error.message
            return True
    wait_until(refused, RELOAD_WAIT_S, "the revocation did not take effect")
    with pytest.raises(openai.PermissionDeniedError):
        chat(client, messages=user("Hi"))


def test_over_max_concurrent_is_429_with_retry_after_and_recovers(server, tenants):
    client = openai_client(server, api_key=tenants["solo"].secret_key)
    running = chat(client, messages=user(ENDLESS), max_tokens=400, stream=True)
    next(iter(running))
    with pytest.raises(openai.RateLimitError) as error:
        chat(client, messages=user("Hi"))
    assert "max_concurrent_requests=1" in error.value.message
    assert int(error.value.response.headers["retry-after"]) >= 1
    running.close()  # the client goes away: the call is cancelled, its lease ends

    def admitted():
        try:
            chat(client, messages=user("Hi"))
            return True
        except openai.RateLimitError:
            return False
    wait_until(admitted, 20, "the key did not recover")


def test_per_key_metrics_count_http_calls(server, tenants):
    alice = tenants["alice"]
    client = openai_client(server, api_key=alice.secret_key)
    before_ok = metric(server, "conclave_key_requests_total", key_id=alice.id, code="OK")
    before_tokens = metric(server, "conclave_key_generation_tokens_total", key_id=alice.id)
    r = chat(client, messages=user("Name a fruit."), max_tokens=6)
    assert metric(server, "conclave_key_requests_total", key_id=alice.id,
                  code="OK") == before_ok + 1
    assert metric(server, "conclave_key_generation_tokens_total",
                  key_id=alice.id) - before_tokens == r.usage.completion_tokens
    missing = metric(server, "conclave_auth_rejections_total", reason="missing_key")
    with pytest.raises(openai.AuthenticationError):
        openai_client(server, api_key="").models.list()
    assert metric(server, "conclave_auth_rejections_total", reason="missing_key") == missing + 1


def test_one_tenant_never_hits_another_tenants_cached_prefix(server, tenants):
    # Long enough for several full blocks; the template's system prompt is
    # shared by every call, so only keys that made no call before are used.
    question = ("The history of the printing press in Europe begins in Mainz. " * 6 +
                "Summarize it.")

    def ask(name):
        client = openai_client(server, api_key=tenants[name].secret_key)
        return chat(client, messages=user(question)).usage
    first = ask("dora")
    assert first.prompt_tokens_details.cached_tokens == 0
    hits = metric(server, "conclave_prefix_cache_hits_total")
    other = ask("erin")
    assert other.prompt_tokens_details.cached_tokens == 0
    assert metric(server, "conclave_prefix_cache_hits_total") == hits
    again = ask("dora")
    assert again.prompt_tokens_details.cached_tokens > 0
    assert metric(server, "conclave_prefix_cache_hits_total") > hits

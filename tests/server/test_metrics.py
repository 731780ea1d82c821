"""The Prometheus metrics of a real conclave-server (--metrics-port 0),
after Generate (instant and thinking) and Contemplate traffic through a real
grpcio client, one rejected call included: (a) scraped from /metrics and
checked against what the calls themselves reported, (b) read back through a
real Prometheus server (the Debian `prometheus` binary; skipped when it is
not installed) scraping it every second, via its HTTP query API.

Everything listens on 127.0.0.1; every wait is bounded."""

import json
import math
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import conclave_api

grpc = pytest.importorskip("grpc")

CALL_TIMEOUT_S = 180
MODEL = "SmolLM2-135M-Instruct.Q4_1"
PROMETHEUS_READY_S = 60
PROMETHEUS_QUERY_S = 60
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
FINISH_LABELS = {"FINISH_REASON_STOP": "stop", "FINISH_REASON_STOP_STRING": "stop_string",
                 "FINISH_REASON_LENGTH": "length"}


def generate(api, stub, question, max_tokens, **fields):
    """(final message, client-side seconds) of one Generate call."""
    pb = api.pb
    request = pb.GenerateRequest(
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content=question)],
        max_tokens=max_tokens, sampling=pb.SamplingParams(temperature=0.0), **fields)
    start = time.monotonic()
    final = None
    for response in stub.Generate(request, timeout=CALL_TIMEOUT_S):
        if response.HasField("final"):
            final = response.final
    assert final is not None
    return final, time.monotonic() - start


@pytest.fixture(scope="module")
def traffic(api, server):
    """Drives the traffic once per module and keeps what the calls reported."""
    pb = api.pb
    with grpc.insecure_channel(server.address) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = api.grpc.ConclaveStub(channel)
        instant = [generate(api, stub, q, 12)
                   for q in ("Name three colors.", "What is the capital of France?")]
        thinking = [generate(api, stub, "What is 6 * 7?", 24, mode=pb.MODE_THINKING,
                             thinking_budget=12)]
        request = pb.ContemplateRequest(
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content=QUESTION)],
            agents=3, max_tokens=32, seed=5, answer_format=pb.ANSWER_FORMAT_NUMBER,
            aggregator=pb.AGGREGATOR_MAJORITY)
        events = list(stub.Contemplate(request, timeout=CALL_TIMEOUT_S))
        contemplate = events[-1].final_answer
        assert events[-1].WhichOneof("event") == "final_answer"
        # Rejected: an empty conversation is INVALID_ARGUMENT before any work.
        with pytest.raises(grpc.RpcError) as rejected:
            list(stub.Generate(pb.GenerateRequest(max_tokens=4), timeout=CALL_TIMEOUT_S))
        assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return {"instant": instant, "thinking": thinking, "contemplate": contemplate,
            "stopped": [e.agent_stopped for e in events
                        if e.WhichOneof("event") == "agent_stopped"]}


class Scrape:
    """One /metrics scrape with lookups by name and labels."""

    def __init__(self, samples):
        self.samples = samples

    def series(self, name, **labels):
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == v for k, v in labels.items())]

    def value(self, name, **labels):
        found = self.series(name, **labels)
        assert len(found) == 1, f"{name}{labels}: {len(found)} series"
        return found[0][1]

    def total(self, name, **labels):
        return sum(v for _, v in self.series(name, **labels))


def scrape_when_idle(server):
    """A scrape taken once the engine has published its idle state (the step
    loop publishes after its last step; bounded wait)."""
    deadline = time.monotonic() + 30
    while True:
        s = Scrape(conclave_api.read_metrics(server.metrics_address))
        if s.value("conclave_num_requests_running") == 0 or time.monotonic() > deadline:
            return s
        time.sleep(0.1)


@pytest.fixture(scope="module")
def scrape(server, traffic):
    return scrape_when_idle(server)


def test_the_server_prints_its_metrics_address(server):
    host, port = server.metrics_address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert server.metrics_address != server.address


def test_calls_are_counted_by_mode_and_status_code(scrape, traffic):
    assert scrape.value("conclave_requests_total", mode="instant", code="OK") == 2
    assert scrape.value("conclave_requests_total", mode="thinking", code="OK") == 1
    assert scrape.value("conclave_requests_total", mode="contemplating", code="OK") == 1
    assert scrape.value("conclave_requests_total", mode="instant", code="INVALID_ARGUMENT") == 1
    for labels, _ in scrape.series("conclave_requests_total"):
        assert labels["model"] == MODEL


def test_successes_are_counted_by_finish_reason(api, scrape, traffic):
    expected = {}
    for mode in ("instant", "thinking"):
        for final, _ in traffic[mode]:
            label = FINISH_LABELS[api.pb.FinishReason.Name(final.finish_reason)]
            expected[(mode, label)] = expected.get((mode, label), 0) + 1
    answered = "answer" if traffic["contemplate"].normalized_answer else "no_answer"
    expected[("contemplating", answered)] = 1
    got = {(l["mode"], l["finish_reason"]): v
           for l, v in scrape.series("conclave_request_success_total") if v > 0}
    assert got == expected


def test_token_counters_equal_the_usage_the_calls_reported(scrape, traffic):
    for mode in ("instant", "thinking"):
        finals = [f for f, _ in traffic[mode]]
        assert scrape.value("conclave_prompt_tokens_total", mode=mode) == sum(
            f.usage.prompt_tokens for f in finals)
        assert scrape.value("conclave_generation_tokens_total", mode=mode) == sum(
            f.usage.generated_tokens for f in finals)
    usage = traffic["contemplate"].usage
    assert scrape.value("conclave_prompt_tokens_total", mode="contemplating") == usage.prompt_tokens
    assert scrape.value("conclave_generation_tokens_total",
                        mode="contemplating") == usage.generated_tokens


def test_latency_histograms_agree_with_the_calls(scrape, traffic):
    instant = traffic["instant"]
    ttft = "conclave_time_to_first_token_seconds"
    assert scrape.value(ttft + "_count", mode="instant") == 2
    # The server's first-token time is taken just before the client's final
    # message reports it, and its end-to-end time just after.
    reported_ttft = sum(f.timing.time_to_first_token_seconds for f, _ in instant)
    assert scrape.value(ttft + "_sum", mode="instant") == pytest.approx(reported_ttft, abs=0.05)
    e2e = "conclave_e2e_request_latency_seconds"
    assert scrape.value(e2e + "_count", mode="instant") == 2
    e2e_sum = scrape.value(e2e + "_sum", mode="instant")
    assert sum(f.timing.total_seconds for f, _ in instant) <= e2e_sum <= sum(w for _, w in instant)
    assert scrape.value(e2e + "_count", mode="contemplating") == 1
    # One inter-token gap per token after the first (tokens arriving with
    # the first add none).
    itl = "conclave_inter_token_latency_seconds"
    gaps = scrape.value(itl + "_count", mode="instant")
    assert 0 < gaps <= sum(f.usage.generated_tokens - 1 for f, _ in instant)
    assert 0 < scrape.value(itl + "_sum", mode="instant") <= e2e_sum
    queue = "conclave_request_queue_time_seconds"
    assert scrape.value(queue + "_count", mode="instant") == 2
    assert scrape.value(queue + "_count", mode="contemplating") == 1
    assert 0 <= scrape.value(queue + "_sum", mode="instant") <= e2e_sum
    # Buckets are cumulative and end at +Inf with the count.
    buckets = sorted(((float(l["le"]), v) for l, v in scrape.series(e2e + "_bucket",
                                                                    mode="instant")))
    assert buckets[-1] == (math.inf, 2)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))


def test_contemplation_metrics(scrape, traffic):
    final = traffic["contemplate"]
    assert scrape.value("conclave_contemplate_agents_count") == 1
    assert scrape.value("conclave_contemplate_agents_sum") == 3
    assert scrape.value("conclave_contemplate_aggregation_seconds_count",
                        aggregator="majority") == 1
    assert scrape.value("conclave_contemplate_saved_tokens_total") == final.usage.saved_tokens_estimate
    assert scrape.total("conclave_contemplate_agents_stopped_total") == len(traffic["stopped"])
    share_count = scrape.value("conclave_contemplate_vote_share_count", aggregator="majority")
    assert share_count == (1 if final.normalized_answer else 0)
    if share_count:
        assert scrape.value("conclave_contemplate_vote_share_sum",
                            aggregator="majority") == pytest.approx(final.support, abs=1e-6)


def test_engine_gauges_and_counters(scrape):
    total = scrape.value("conclave_kv_blocks_total")
    assert total > 0
    assert scrape.value("conclave_kv_blocks_used") == 0  # idle
    assert 0 < scrape.value("conclave_kv_blocks_cached") <= total  # prompts stay cached
    assert scrape.value("conclave_kv_cache_usage_ratio") == 0
    assert scrape.value("conclave_kv_cache_token_usage_ratio") == 0
    assert scrape.value("conclave_num_requests_running") == 0
    assert scrape.value("conclave_num_requests_waiting") == 0
    queries = scrape.value("conclave_prefix_cache_queries_total")
    hits = scrape.value("conclave_prefix_cache_hits_total")
    # The Contemplate agents share one prompt, and Thinking's answer phase
    # re-reads its own first phase: both hit the cache.
    assert 0 < hits <= queries
    assert queries % 16 == 0  # whole 16-token blocks
    assert scrape.value("conclave_num_preemptions_total") >= 0


def test_build_info(scrape):
    [(labels, value)] = scrape.series("conclave_build_info")
    assert value == 1
    assert labels["backend"] == "cpu"
    assert labels["version"] and labels["git_commit"]


def test_kv_usage_is_visible_while_a_request_runs(api, server):
    """A long request holds blocks: the KV gauges rise while it runs."""
    pb = api.pb
    request = pb.GenerateRequest(prompt="1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,", max_tokens=400,
                                 sampling=pb.SamplingParams(temperature=0.0))
    with grpc.insecure_channel(server.address) as channel:
        stub = api.grpc.ConclaveStub(channel)
        call = stub.Generate(request, timeout=CALL_TIMEOUT_S)
        try:
            next(call)  # it is running
            # The engine publishes its stats after each step: the step that
            # sent the first token may not have published yet.
            deadline = time.monotonic() + 30
            while True:
                s = Scrape(conclave_api.read_metrics(server.metrics_address))
                if s.value("conclave_num_requests_running") > 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            call.cancel()
    assert s.value("conclave_num_requests_running") == 1
    assert s.value("conclave_num_sequences_running") == 1
    assert s.value("conclave_kv_blocks_used") >= 1
    blocks_ratio = s.value("conclave_kv_cache_usage_ratio")
    tokens_ratio = s.value("conclave_kv_cache_token_usage_ratio")
    assert 0 < tokens_ratio <= blocks_ratio <= 1


def test_a_taken_metrics_port_fails_the_start_before_listening(server, server_paths):
    port = server.metrics_address.rsplit(":", 1)[1]
    result = subprocess.run(
        [str(server_paths.binary), "--model", str(server_paths.model), "--bind", "127.0.0.1",
         "--grpc-port", "0", "--threads", "1", "--kv-cache-mib", "64", "--metrics-port", port],
        capture_output=True, timeout=120)
    assert result.returncode == 1
    assert b"cannot serve metrics on 127.0.0.1:" + port.encode() in result.stderr
    assert b"listening" not in result.stdout


def test_metrics_port_minus_one_serves_no_metrics(start_server):
    server = start_server("--metrics-port", "-1")
    assert server.address and server.metrics_address is None
    assert server.stop() == 0
    # Nothing else came on stdout (the reader ends with None at EOF).
    rest = []
    while (line := server._next_line(10)) is not None:
        rest.append(line)
    assert rest == []


# --- (b) through a real Prometheus server -----------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode("utf-8"))


@pytest.fixture(scope="module")
def prometheus(server, traffic, tmp_path_factory):
    """A Prometheus server on 127.0.0.1 scraping the conclave server every
    second; its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package `prometheus`)")
    root = tmp_path_factory.mktemp("prometheus")
    (root / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: conclave\n    static_configs:\n"
        f"      - targets: ['{server.metrics_address}']\n")
    port = free_port()
    log = open(root / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={root / 'prometheus.yml'}",
         f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PROMETHEUS_READY_S
        while True:
            if proc.poll() is not None:
                pytest.fail("prometheus exited:\n" + (root / "prometheus.log").read_text())
            try:
                with urllib.request.urlopen(base + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prometheus not ready:\n" + (root / "prometheus.log").read_text())
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


def query(base, expr):
    """An instant query's result vector, waiting (bounded) until it has one."""
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    deadline = time.monotonic() + PROMETHEUS_QUERY_S
    while True:
        body = http_json(url)
        assert body["status"] == "success", body
        if body["data"]["result"] or time.monotonic() > deadline:
            return body["data"]["result"]
        time.sleep(0.5)


def query_value(base, expr):
    result = query(base, expr)
    assert len(result) == 1, f"{expr}: {result}"
    return float(result[0]["value"][1])


def test_prometheus_scrapes_the_server(prometheus, server):
    assert query_value(prometheus, 'up{job="conclave"}') == 1
    result = query(prometheus, "conclave_build_info")
    assert len(result) == 1 and result[0]["metric"]["instance"] == server.metrics_address


def test_prometheus_reads_back_what_the_server_exports(prometheus, server, traffic):
    direct = scrape_when_idle(server)
    checks = [
        ("conclave_requests_total", {"mode": "instant", "code": "OK"}),
        ("conclave_requests_total", {"mode": "instant", "code": "INVALID_ARGUMENT"}),
        ("conclave_requests_total", {"mode": "contemplating", "code": "OK"}),
        ("conclave_prompt_tokens_total", {"mode": "instant"}),
        ("conclave_generation_tokens_total", {"mode": "contemplating"}),
        ("conclave_time_to_first_token_seconds_count", {"mode": "instant"}),
        ("conclave_contemplate_agents_sum", {}),
        ("conclave_kv_blocks_total", {}),
        ("conclave_prefix_cache_hits_total", {}),
    ]
    for name, labels in checks:
        selector = ",".join([f'model="{MODEL}"'] + [f'{k}="{v}"' for k, v in labels.items()])
        assert query_value(prometheus, f"{name}{{{selector}}}") == direct.value(name, **labels), name
    # The counts are what the traffic made, not just equal to a scrape.
    assert query_value(prometheus, 'sum(conclave_requests_total{code="OK"})') == 4
    assert query_value(prometheus, 'sum by (mode) (conclave_requests_total{mode="thinking"})') == 1


def test_prometheus_computes_quantiles_from_the_histograms(prometheus):
    p99 = query_value(
        prometheus,
        'histogram_quantile(0.99, sum by (le) (conclave_e2e_request_latency_seconds_bucket'
        '{mode="instant"}))')
    assert 0 < p99 <= 600

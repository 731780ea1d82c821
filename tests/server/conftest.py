"""Fixtures for the gRPC API tests: a real build/bin/conclave-server process
on 127.0.0.1 (free ports, read from its "listening HOST:PORT" and "metrics
HOST:PORT" lines: server.address, server.metrics_address) and
Python stubs generated from proto/ with grpc_tools.protoc into a temporary
directory at session start (nothing generated is committed).

The binary comes from $CONCLAVE_BUILD_DIR/bin (default <repo>/build/bin), the
model from <repo>/models. Tests skip when either is missing. Every wait is
bounded; servers are stopped on teardown (SIGTERM, then SIGKILL).
"""

import pathlib
import sys
import types

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "loadtest"))
import conclave_api  # noqa: E402  (stubs and the server process, shared with loadtest/)

MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20


def server_binary():
    path = conclave_api.build_dir() / "bin" / "conclave-server"
    if not path.exists():
        pytest.skip(f"{path} not built")
    return path


def model_path():
    if not MODEL.exists():
        pytest.skip(f"model {MODEL.name} not present (scripts/fetch_models.sh)")
    return MODEL


@pytest.fixture(scope="session")
def api(tmp_path_factory):
    """The generated modules: api.pb (messages) and api.grpc (stubs)."""
    pytest.importorskip("grpc_tools")
    return conclave_api.load_stubs(tmp_path_factory.mktemp("conclave_stubs"))


def ServerProcess(args, log_path):
    """One conclave-server subprocess (loadtest/conclave_api.py) with the
    tests' small settings; its stderr goes to `log_path`."""
    server_binary()
    return conclave_api.ServerProcess(
        model_path(), ["--threads", "2", "--kv-cache-mib", "64", *args], log_path,
        start_timeout=START_TIMEOUT_S, stop_timeout=STOP_TIMEOUT_S)


@pytest.fixture
def server_paths():
    """The server binary and the model (skips when either is missing)."""
    return types.SimpleNamespace(binary=server_binary(), model=model_path())


@pytest.fixture
def start_server(tmp_path):
    """Starts servers with extra arguments; all are stopped on teardown."""
    started = []

    def start(*args):
        server = ServerProcess(list(args), tmp_path / f"server{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server shared by a module's tests (--max-agents 4,
    --max-prompt-tokens 512)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    proc = ServerProcess(["--max-agents", "4", "--max-prompt-tokens", "512"], log)
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture
def channel(server):
    grpc = pytest.importorskip("grpc")
    with grpc.insecure_channel(server.address) as ch:
        grpc.channel_ready_future(ch).result(timeout=30)
        yield ch


@pytest.fixture
def stub(api, channel):
    return api.grpc.ConclaveStub(channel)

"""Fixtures for the gRPC API tests: a real build/bin/conclave-server process
on 127.0.0.1 (a free port, read from its "listening HOST:PORT" line) and
Python stubs generated from proto/ with grpc_tools.protoc into a temporary
directory at session start (nothing generated is committed).

The binary comes from $CONCLAVE_BUILD_DIR/bin (default <repo>/build/bin), the
model from <repo>/models. Tests skip when either is missing. Every wait is
bounded; servers are stopped on teardown (SIGTERM, then SIGKILL).
"""

import importlib
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import types

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20


def build_dir():
    return pathlib.Path(os.environ.get("CONCLAVE_BUILD_DIR", REPO / "build"))


def server_binary():
    path = build_dir() / "bin" / "conclave-server"
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
    grpc_tools = pytest.importorskip("grpc_tools")
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("conclave_stubs")
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        "conclave/v1/conclave.proto",
    ])
    assert rc == 0, "grpc_tools.protoc failed on proto/conclave/v1/conclave.proto"
    sys.path.insert(0, str(out))
    try:
        pb = importlib.import_module("conclave.v1.conclave_pb2")
        pb_grpc = importlib.import_module("conclave.v1.conclave_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return types.SimpleNamespace(pb=pb, grpc=pb_grpc)


class ServerProcess:
    """One conclave-server subprocess; its stderr goes to a log file."""

    def __init__(self, args, log_path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [str(server_binary()), "--model", str(model_path()), "--bind", "127.0.0.1",
             "--grpc-port", "0", "--threads", "2", "--kv-cache-mib", "64", *args],
            stdout=subprocess.PIPE, stderr=self._log)
        self._lines = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.address = None
        try:
            line = self._lines.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            line = None
        if line is None or not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"conclave-server did not start (stdout {line!r}):\n{self.log()}")
        self.address = line.split()[1]

    def _read_stdout(self):
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").strip())
        self._lines.put(None)

    def log(self):
        self._log.flush()
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()
        return self.proc.returncode


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

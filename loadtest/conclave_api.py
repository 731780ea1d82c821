"""Python access to a conclave server for the load tools: generated stubs
and a server subprocess on 127.0.0.1.

  api = load_stubs()                     # api.pb (messages), api.grpc (stubs)
  with ServerProcess(model, extra_args) as server:
      stub = api.grpc.ConclaveStub(grpc.insecure_channel(server.address))

Stubs are generated from proto/ with grpc_tools.protoc into a temporary
directory (nothing generated is committed). The server is build/bin/
conclave-server (or $CONCLAVE_BUILD_DIR/bin), started with --grpc-port 0;
its "listening HOST:PORT" line gives the address. Every wait is bounded.
"""
import importlib
import os
import pathlib
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import types

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def build_dir():
    return pathlib.Path(os.environ.get("CONCLAVE_BUILD_DIR", REPO / "build"))


def load_stubs(out=None):
    """Generates the Python stubs into `out` (default: a new temporary
    directory) and imports them."""
    import grpc_tools
    from grpc_tools import protoc

    out = str(out or tempfile.mkdtemp(prefix="conclave_stubs_"))
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(["grpc_tools.protoc", f"-I{REPO / 'proto'}", f"-I{well_known}",
                      f"--python_out={out}", f"--grpc_python_out={out}",
                      "conclave/v1/conclave.proto"])
    if rc != 0:
        raise RuntimeError("grpc_tools.protoc failed on proto/conclave/v1/conclave.proto")
    sys.path.insert(0, out)
    try:
        pb = importlib.import_module("conclave.v1.conclave_pb2")
        pb_grpc = importlib.import_module("conclave.v1.conclave_pb2_grpc")
    finally:
        sys.path.remove(out)
    return types.SimpleNamespace(pb=pb, grpc=pb_grpc)


class ServerProcess:
    """conclave-server on 127.0.0.1 and a free port; stderr to `log_path`.

    Raises RuntimeError (with the server's log) when it does not print its
    "listening HOST:PORT" line within `start_timeout` seconds."""

    def __init__(self, model=DEFAULT_MODEL, extra_args=(), log_path=None, start_timeout=120,
                 stop_timeout=20):
        self.log_path = log_path or tempfile.mktemp(prefix="conclave_server_", suffix=".log")
        self.stop_timeout = stop_timeout
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(build_dir() / "bin" / "conclave-server"), "--model", str(model),
             "--bind", "127.0.0.1", "--grpc-port", "0", *extra_args],
            stdout=subprocess.PIPE, stderr=self._log)
        self._lines = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.address = None
        try:
            line = self._lines.get(timeout=start_timeout)
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
        """SIGTERM, then SIGKILL if it has not exited within stop_timeout."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=self.stop_timeout)
        self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

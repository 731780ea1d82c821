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


def load_stubs():
    import grpc_tools
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="conclave_stubs_")
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
    """conclave-server on 127.0.0.1 and a free port; stderr to `log_path`."""

    def __init__(self, model=DEFAULT_MODEL, extra_args=(), log_path=None, start_timeout=120):
        self.log_path = log_path or tempfile.mktemp(prefix="conclave_server_", suffix=".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(build_dir() / "bin" / "conclave-server"), "--model", str(model),
             "--bind", "127.0.0.1", "--grpc-port", "0", *extra_args],
            stdout=subprocess.PIPE, stderr=self._log)
        line = [None]

        def read():
            for raw in self.proc.stdout:
                text = raw.decode(errors="replace").strip()
                if text.startswith("listening "):
                    line[0] = text
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(start_timeout)
        if line[0] is None:
            self.stop()
            raise RuntimeError(f"conclave-server did not start; see {self.log_path}")
        self.address = line[0].split()[1]

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

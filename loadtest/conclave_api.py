"""Python access to a conclave server for the load tools: generated stubs
and a server subprocess on 127.0.0.1.

  api = load_stubs()                     # api.pb (messages), api.grpc (stubs)
  with ServerProcess(model, extra_args) as server:
      stub = api.grpc.ConclaveStub(grpc.insecure_channel(server.address))
      samples = read_metrics(server.metrics_address)  # [(name, labels, value)]

Stubs are generated from proto/ with grpc_tools.protoc into a temporary
directory (nothing generated is committed). The server is build/bin/
conclave-server (or $CONCLAVE_BUILD_DIR/bin), started with --grpc-port 0,
--metrics-port 0 and --http-port 0; its "listening HOST:PORT" line gives the
address, the "metrics HOST:PORT" line after it the Prometheus endpoint
(metrics_address, None when extra_args pass --metrics-port -1) and the
"http HOST:PORT" line the OpenAI-compatible endpoint (http_address, None when
extra_args pass --http-port -1). Every wait is bounded.
"""
import importlib
import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import types
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def build_dir():
    return pathlib.Path(os.environ.get("CONCLAVE_BUILD_DIR", REPO / "build"))


def load_stubs(out=None):
    """Generates the Python stubs into `out` (default: a new temporary
    directory) and imports them: .pb (messages), .grpc (stubs), .stubs_dir
    (where they are, for a client in another process)."""
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
    return types.SimpleNamespace(pb=pb, grpc=pb_grpc, stubs_dir=out)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """The samples of a Prometheus text exposition: [(name, {label: value},
    float)], comment lines skipped."""
    samples = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None or line.startswith("#"):
            continue
        name, labels, value = m.groups()
        samples.append((name, dict(_LABEL.findall(labels or "")), float(value)))
    return samples


def read_metrics(metrics_address, timeout=10):
    """GET http://`metrics_address`/metrics, parsed (see parse_metrics)."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=timeout) as r:
        return parse_metrics(r.read().decode("utf-8"))


def _port_disabled(args, flag):
    """Whether `args` turn an endpoint off (the last --`flag` they give is
    -1); absl accepts - or --, and - or _ inside the name."""
    value = None
    args = [str(a) for a in args]
    for i, arg in enumerate(args):
        name, eq, inline = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name.replace("_", "-") != flag:
            continue
        value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
    return value == "-1"


class ServerProcess:
    """conclave-server on 127.0.0.1 and free ports; stderr to `log_path`.

    `address` is the gRPC address; `metrics_address` the Prometheus one
    (HOST:PORT, scrape http://HOST:PORT/metrics), None when extra_args
    disable metrics (--metrics-port -1); `http_address` the OpenAI-compatible
    one (HOST:PORT; https:// when extra_args give --tls-cert), None when
    extra_args disable it (--http-port -1). Raises RuntimeError (with the
    server's log) when it does not print its "listening HOST:PORT" line (and
    then its "metrics" and "http" lines) within `start_timeout` seconds."""

    def __init__(self, model=DEFAULT_MODEL, extra_args=(), log_path=None, start_timeout=120,
                 stop_timeout=20):
        self.log_path = log_path or tempfile.mktemp(prefix="conclave_server_", suffix=".log")
        self.stop_timeout = stop_timeout
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(build_dir() / "bin" / "conclave-server"), "--model", str(model),
             "--bind", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0", "--http-port", "0",
             *extra_args],
            stdout=subprocess.PIPE, stderr=self._log)
        self._lines = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.address = None
        self.metrics_address = None
        self.http_address = None
        line = self._next_line(start_timeout)
        if line is None or not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"conclave-server did not start (stdout {line!r}):\n{self.log()}")
        self.address = line.split()[1]
        if not _port_disabled(extra_args, "metrics-port"):
            # Printed right after "listening", in the same flush.
            line = self._next_line(start_timeout)
            if line is None or not line.startswith("metrics "):
                self.stop()
                raise RuntimeError(
                    f"conclave-server printed no metrics address (stdout {line!r}):\n{self.log()}")
            self.metrics_address = line.split()[1]
        if not _port_disabled(extra_args, "http-port"):
            # Printed right after "metrics", in the same flush.
            line = self._next_line(start_timeout)
            if line is None or not line.startswith("http "):
                self.stop()
                raise RuntimeError(
                    f"conclave-server printed no http address (stdout {line!r}):\n{self.log()}")
            self.http_address = line.split()[1]

    def _next_line(self, timeout):
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def _read_stdout(self):
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").strip())
        self._lines.put(None)

    def log(self):
        if not self._log.closed:
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

"""TLS for both transports (--tls-cert, --tls-key) with a self-signed
certificate made by openssl: the OpenAI client over HTTPS, grpcio with
ssl_channel_credentials and the `conclave` CLI with --tls-ca; plaintext
clients fail; a missing or lone file stops the server before it listens."""

import shutil
import ssl
import subprocess

import pytest

import conclave_api
from http_helpers import CALL_TIMEOUT_S, openai_client, user

grpc = pytest.importorskip("grpc")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """(cert.pem, key.pem) of a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def tls_server(start_server, certificate):
    cert, key = certificate
    return start_server("--tls-cert", str(cert), "--tls-key", str(key))


def test_the_openai_client_calls_https_trusting_the_certificate(tls_server, certificate):
    cert, _ = certificate
    with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)),
                      timeout=CALL_TIMEOUT_S) as http:
        client = openai_client(tls_server, scheme="https", http_client=http)
        r = client.chat.completions.create(model=MODEL_ID, messages=user("Say hi."),
                                           max_tokens=4, temperature=0)
        assert r.usage.completion_tokens > 0
        chunks = list(client.chat.completions.create(model=MODEL_ID, messages=user("Say hi."),
                                                     max_tokens=4, temperature=0, stream=True))
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    # Without the certificate the client refuses the server.
    with httpx.Client(timeout=30) as http:
        with pytest.raises(openai.APIConnectionError):
            openai_client(tls_server, scheme="https", http_client=http).models.list()


def test_a_plaintext_http_client_gets_no_answer(tls_server):
    with httpx.Client(timeout=30) as http:
        with pytest.raises(httpx.HTTPError):
            http.get(f"http://{tls_server.http_address}/v1/models").raise_for_status()


def test_grpc_serves_tls_to_a_client_that_trusts_the_certificate(api, tls_server, certificate):
    cert, _ = certificate
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(tls_server.address, credentials) as channel:
        models = api.grpc.ConclaveStub(channel).ListModels(api.pb.ListModelsRequest(),
                                                           timeout=30)
        assert models.models[0].id == MODEL_ID
    with grpc.insecure_channel(tls_server.address) as channel:
        with pytest.raises(grpc.RpcError) as error:
            api.grpc.ConclaveStub(channel).ListModels(api.pb.ListModelsRequest(), timeout=30)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_cli_dials_tls_with_its_ca_flag(tls_server, certificate):
    cli = conclave_api.build_dir() / "bin" / "conclave"
    if not cli.exists():
        pytest.skip(f"{cli} not built")
    cert, _ = certificate
    result = subprocess.run([str(cli), "--server", tls_server.address, "--tls-ca", str(cert),
                             "--timeout", "30", "models"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert MODEL_ID in result.stdout
    plain = subprocess.run([str(cli), "--server", tls_server.address, "--timeout", "10",
                            "models"], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1 and "UNAVAILABLE" in plain.stderr


@pytest.mark.parametrize("flags, expected", [
    (["--tls-cert", "{missing}", "--tls-key", "{key}"], "cannot read --tls-cert"),
    (["--tls-cert", "{cert}"], "--tls-cert needs --tls-key"),
    (["--tls-cert", "{key}", "--tls-key", "{key}"], "holds no PEM certificate"),
])
def test_bad_tls_files_stop_the_server_before_it_listens(server_paths, certificate, tmp_path,
                                                         flags, expected):
    cert, key = certificate
    names = {"cert": str(cert), "key": str(key), "missing": str(tmp_path / "none.pem")}
    result = subprocess.run(
        [str(server_paths.binary), "--model", str(server_paths.model), "--bind", "127.0.0.1",
         "--grpc-port", "0", "--metrics-port", "-1", "--http-port", "0",
         *[f.format(**names) for f in flags]],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert expected in result.stderr

"""Shared fixtures for parity tests against llama.cpp (llama-cpp-python).

Binaries come from $CONCLAVE_BUILD_DIR/bin (default <repo>/build/bin);
models from <repo>/models. Tests needing a missing model or binary skip.
"""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
MODELS = {
    "smollm2": REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": REPO / "models" / "gemma-3-270m-q4_k_m.gguf",
}


def build_dir():
    return pathlib.Path(os.environ.get("CONCLAVE_BUILD_DIR", REPO / "build"))


def binary(name):
    """Path of build/bin/<name>, skipping the test when it was not built."""
    path = build_dir() / "bin" / name
    if not path.exists():
        pytest.skip(f"{path} not built")
    return path


@pytest.fixture(scope="session", params=sorted(MODELS))
def model_path(request):
    path = MODELS[request.param]
    if not path.exists():
        pytest.skip(f"model {path.name} not present")
    return path


@pytest.fixture(scope="session")
def llama_cpp_module():
    return pytest.importorskip("llama_cpp")


_VOCABS = {}


@pytest.fixture(scope="session", autouse=True)
def close_vocabs():
    """Closes the cached vocabularies before the interpreter exits: left to
    Llama.__del__ at shutdown, llama-cpp-python's free functions are already
    gone and it prints a TypeError traceback per model."""
    yield
    for llm in _VOCABS.values():
        llm.close()
    _VOCABS.clear()


@pytest.fixture(scope="session")
def llama_vocab(model_path, llama_cpp_module):
    """llama_cpp.Llama(model_path, vocab_only=True), cached per model."""
    if model_path not in _VOCABS:
        _VOCABS[model_path] = llama_cpp_module.Llama(
            model_path=str(model_path), vocab_only=True, verbose=False)
    return _VOCABS[model_path]

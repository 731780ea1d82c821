"""Greedy generation and first-step logits: conclave vs llama.cpp.

Both run the same GGUF file on the CPU with 2 threads. llama.cpp (through
llama-cpp-python) gets exactly the prompt token ids conclave produced (the
tokenizer is compared separately, in test_tokenizer_parity.py, and here as a
cross-check), runs without flash attention (conclave reproduces the ggml
non-flash attention arithmetic) and with an f16 KV cache (its default, and
conclave's).
"""
import json
import os
import pathlib
import subprocess
import tempfile

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("CONCLAVE_BUILD_DIR", ROOT / "build"))
GENERATE = BUILD / "bin" / "conclave-generate"
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"

N_TOKENS = 64

# (chat?, prompt): plain continuations and chat turns, varied in length,
# language, digits and code.
PROMPTS = [
    (False, "The capital of France is"),
    (False, "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    (False, "Once upon a time, in a small village by the sea, there lived"),
    (False, "1, 1, 2, 3, 5, 8, 13, 21,"),
    (False, "Les oiseaux chantent le matin parce que"),
    (True, "What is 17 times 23? Think step by step."),
    (True, "Write a haiku about autumn leaves."),
    (True, "Explain what a hash table is to a ten-year-old."),
    (True, "Translate to German: The weather is nice today."),
    (True, "List three prime numbers greater than 100."),
    (True, "Résumé: give me two tips for writing clear emails. 🙂"),
]


def run_conclave(model, chat, prompt, logits_path):
    cmd = [str(GENERATE), "--model", str(model), "--prompt", prompt,
           "--max-tokens", str(N_TOKENS), "--temperature", "0",
           "--ignore-eos", "--threads", "2", "--json",
           "--dump-logits", logits_path]
    if chat:
        cmd.append("--chat")
    out = subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return json.loads(out.stdout.decode("utf-8", errors="replace"))


# Gemma 3 does not reach bit parity yet: llama.cpp repacks its Q4_K tensors
# (q4_K_8x8) and multiplies them in an order that depends on how many rows
# share the product; conclave reproduces it only behind
# CONCLAVE_Q4K_ORDER=repacked, and even then logits still differ by up to ~1
# on some prompts (open work, docs/parity.md). The cases run and report;
# Gemma's forward is checked against a float64 reference in
# tests/kernels/cpu/cpu_backend_test.cc.
GEMMA_NOT_EXACT = pytest.mark.xfail(
    reason="Gemma 3: llama.cpp's repacked Q4_K order not reproduced yet", strict=False)


@pytest.fixture(scope="module", params=["smollm2", pytest.param("gemma3", marks=GEMMA_NOT_EXACT)])
def peer(request):
    model = SMOLLM2 if request.param == "smollm2" else GEMMA3
    if not model.exists():
        pytest.skip(f"{model.name} not fetched")
    if not GENERATE.exists():
        pytest.fail(f"{GENERATE} not built")
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=512, n_batch=512,
                          n_threads=2, n_threads_batch=2, flash_attn=False,
                          logits_all=True, verbose=False)
    yield request.param, model, llm
    llm.close()


def llama_greedy(llm, prompt_ids, n):
    """Greedy continuation by argmax of llama.cpp's logits, one token per
    decode step (as conclave-generate runs); returns the tokens and the
    logits each was chosen from, [n, vocab]."""
    llm.reset()
    llm.eval(prompt_ids)
    out, rows = [], []
    for _ in range(n):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        rows.append(logits)
        tok = int(np.argmax(logits))
        out.append(tok)
        llm.eval([tok])
    return out, np.stack(rows)


# Tolerance on logits: zero. conclave reproduces the arithmetic of
# llama.cpp's CPU backend on this machine (same Q8 activation quantization,
# same float summation order of every dot product, same SIMD exp, same fp16
# roundings in attention; see kernels/cpu/simd_order.h), so the logits are
# bit-identical. Anything looser would hide a divergence: a 1-ulp difference
# at layer 10 of SmolLM2 grows to ~1 logit by layer 30 and flips greedy
# tokens within a few dozen steps (measured while building this; see
# docs/parity.md). A machine whose llama.cpp build takes a path we do not
# reproduce fails here loudly rather than passing by luck.
LOGIT_ATOL = 0.0


@pytest.mark.parametrize("chat,prompt", PROMPTS)
def test_greedy_tokens_and_first_logits_match_llama_cpp(peer, chat, prompt):
    name, model, llm = peer
    with tempfile.NamedTemporaryFile(suffix=".f32") as f:
        ours = run_conclave(model, chat, prompt, f.name)
        our_logits = np.fromfile(f.name, dtype=np.float32)
    prompt_ids = ours["prompt_tokens"]
    # Cross-check the tokenizer on the rendered prompt when it is plain text.
    if not chat:
        add_bos = name == "gemma3"
        theirs_ids = llm.tokenize(prompt.encode(), add_bos=add_bos, special=True)
        assert prompt_ids == theirs_ids
    want, their_logits = llama_greedy(llm, prompt_ids, N_TOKENS)
    our_logits = our_logits.reshape(len(ours["tokens"]), -1)
    assert our_logits.shape == their_logits.shape
    # Compare step by step up to the first differing token (after it the two
    # runs condition on different text).
    steps = next((i + 1 for i, (a, b) in enumerate(zip(ours["tokens"], want)) if a != b),
                 N_TOKENS)
    diff = np.abs(our_logits[:steps] - their_logits[:steps])
    print(f"{name} steps={steps} max|dlogit|={diff.max():.4g}")
    assert diff[0].max() <= LOGIT_ATOL, f"first-step logits differ by {diff[0].max()}"
    assert ours["tokens"] == want
    assert diff.max() <= LOGIT_ATOL, f"logits differ by {diff.max()} at step {diff.max(1).argmax()}"

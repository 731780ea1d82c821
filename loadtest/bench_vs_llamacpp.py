#!/usr/bin/env python3
"""CPU speed: conclave vs llama.cpp on one GGUF file, same threads, same tokens.

Three workloads, run interleaved (conclave, then llama.cpp, per run) so that
drift of this noisy machine hits both alike:
  single    one sequence: a ~100-token prompt, then --tokens greedy tokens;
            prefill and decode tokens/s
  prefill   a 512-token prompt, one forward pass; prefill tokens/s
  parallel  8 sequences of one prompt decoded together (--tokens each,
            greedy): aggregate decode tokens/s. On the llama.cpp side its
            batched decoding: the prompt is evaluated once for 8 sequence ids
            (unified KV cache), then each step is one llama_decode of 8
            tokens (as llama.cpp's `batched` example); on conclave's, one
            sequence group of n=8 (conclave-generate --n 8).
Prints one JSON object: every run, the medians and the ratios
conclave / llama.cpp (> 1: conclave is faster).

  .venv/bin/python loadtest/bench_vs_llamacpp.py [--runs 5] [--threads 2]
      [--tokens 128] [--parallel 8] [--model models/...gguf]
"""
import argparse
import ctypes
import json
import os
import pathlib
import statistics
import subprocess
import time

import llama_cpp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(os.environ.get("CONCLAVE_BUILD_DIR", ROOT / "build"))

PROMPT = (
    "The history of the printing press begins in the fifteenth century, when "
    "Johannes Gutenberg combined movable metal type, oil-based inks and a "
    "wooden press adapted from those used to make wine. Before that, books "
    "were copied by hand, which made them rare and expensive. Within fifty "
    "years of Gutenberg's first Bible, presses were working in more than two "
    "hundred cities across Europe, and millions of volumes had been printed. "
    "Scholars could now compare identical copies of a text, errors could be "
    "corrected in later editions, and ideas travelled faster than ever "
    "before. Write a short essay about what changed for ordinary people:"
)


def conclave(model, threads, prompt_ids, tokens, n=1):
    out = subprocess.run(
        [str(BUILD / "bin" / "conclave-generate"), "--model", str(model),
         "--prompt-ids", ",".join(map(str, prompt_ids)), "--max-tokens", str(tokens),
         "--temperature", "0", "--ignore-eos", "--threads", str(threads),
         "--n", str(n), "--json"],
        check=True, capture_output=True)
    r = json.loads(out.stdout.decode("utf-8", errors="replace"))
    generated = sum(len(s["tokens"]) for s in r["sequences"])
    return {
        "prefill_tokens_per_second": len(prompt_ids) / r["prefill_seconds"],
        # Tokens after each sequence's first, over the time after the first.
        "decode_tokens_per_second": (generated - n) / r["decode_seconds"] if tokens > 1 else 0.0,
    }


class LlamaCpp:
    """llama.cpp through llama-cpp-python's low-level API."""

    def __init__(self, model, threads, n_seq):
        self.llm = llama_cpp.Llama(model_path=str(model), n_ctx=2048, n_batch=512,
                                   n_threads=threads, n_threads_batch=threads,
                                   flash_attn=False, verbose=False)
        # A second context for batched decoding of n_seq sequences that share
        # the prompt's cells (kv_unified).
        p = llama_cpp.llama_context_default_params()
        p.n_ctx = 2048
        p.n_batch = 512
        p.n_ubatch = 512
        p.n_seq_max = n_seq
        p.n_threads = threads
        p.n_threads_batch = threads
        p.kv_unified = True
        p.flash_attn_type = 0  # disabled, as in the single-sequence context
        self.ctx = llama_cpp.llama_init_from_model(self.llm.model, p)
        if not self.ctx:
            raise RuntimeError("llama_init_from_model failed")
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.llm.model))
        self.batch = llama_cpp.llama_batch_init(512, 0, n_seq)

    def prefill(self, prompt_ids):
        """One forward pass over the prompt (wall time of Llama.eval)."""
        self.llm.reset()
        start = time.perf_counter()
        self.llm.eval(prompt_ids)
        return {"prefill_tokens_per_second": len(prompt_ids) / (time.perf_counter() - start)}

    def single(self, prompt_ids, tokens):
        ctx = self.llm.ctx
        self.llm.reset()
        llama_cpp.llama_perf_context_reset(ctx)
        self.llm.eval(prompt_ids)
        tok = self.llm.sample(temp=0.0)
        for _ in range(tokens - 1):
            self.llm.eval([tok])
            tok = self.llm.sample(temp=0.0)
        perf = llama_cpp.llama_perf_context(ctx)
        return {
            "prefill_tokens_per_second": perf.n_p_eval / (perf.t_p_eval_ms / 1e3),
            "decode_tokens_per_second": perf.n_eval / (perf.t_eval_ms / 1e3),
        }

    def _decode(self, entries):
        """entries: (token, pos, [seq ids], want_logits). Returns seconds."""
        b = self.batch
        b.n_tokens = len(entries)
        for i, (tok, pos, seqs, logits) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = len(seqs)
            for j, s in enumerate(seqs):
                b.seq_id[i][j] = s
            b.logits[i] = 1 if logits else 0
        start = time.perf_counter()
        rc = llama_cpp.llama_decode(self.ctx, b)
        elapsed = time.perf_counter() - start
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        return elapsed

    def _argmax(self, i):
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, i)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))))

    def parallel(self, prompt_ids, n_seq, tokens):
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        seqs = list(range(n_seq))
        n = len(prompt_ids)
        self._decode([(t, p, seqs, p == n - 1) for p, t in enumerate(prompt_ids)])
        first = self._argmax(n - 1)
        current = [first] * n_seq
        decode_seconds = 0.0
        for step in range(tokens - 1):
            decode_seconds += self._decode(
                [(current[s], n + step, [s], True) for s in range(n_seq)])
            current = [self._argmax(s) for s in range(n_seq)]
        return {"decode_tokens_per_second": n_seq * (tokens - 1) / decode_seconds}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    peer = LlamaCpp(args.model, args.threads, args.parallel)
    prompt = peer.llm.tokenize(PROMPT.encode(), add_bos=True, special=False)
    long_text = PROMPT
    while len(peer.llm.tokenize(long_text.encode(), add_bos=True, special=False)) < 512:
        long_text += " " + PROMPT
    prompt_512 = peer.llm.tokenize(long_text.encode(), add_bos=True, special=False)[:512]

    runs = []
    for _ in range(args.runs):
        run = {"conclave": {}, "llama_cpp": {}}
        s = conclave(args.model, args.threads, prompt, args.tokens)
        run["conclave"]["single_decode"] = s["decode_tokens_per_second"]
        run["llama_cpp"]["single_decode"] = peer.single(prompt, args.tokens)["decode_tokens_per_second"]
        run["conclave"]["prefill_512"] = conclave(
            args.model, args.threads, prompt_512, 1)["prefill_tokens_per_second"]
        run["llama_cpp"]["prefill_512"] = peer.prefill(prompt_512)["prefill_tokens_per_second"]
        run["conclave"][f"parallel_{args.parallel}_decode"] = conclave(
            args.model, args.threads, prompt, args.tokens, n=args.parallel)["decode_tokens_per_second"]
        run["llama_cpp"][f"parallel_{args.parallel}_decode"] = peer.parallel(
            prompt, args.parallel, args.tokens)["decode_tokens_per_second"]
        runs.append(run)
        print(json.dumps(run), flush=True, file=__import__("sys").stderr)

    keys = list(runs[0]["conclave"].keys())
    median = {e: {k: statistics.median(r[e][k] for r in runs) for k in keys}
              for e in ("conclave", "llama_cpp")}
    result = {
        "model": pathlib.Path(args.model).name,
        "threads": args.threads,
        "prompt_tokens": len(prompt),
        "generated_tokens": args.tokens,
        "parallel": args.parallel,
        "runs": runs,
        "median": median,
        "ratio_conclave_over_llama_cpp": {k: median["conclave"][k] / median["llama_cpp"][k]
                                          for k in keys},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Single-sequence speed: conclave-generate vs llama.cpp on one GGUF file.

Same model, same threads, same prompt tokens, greedy, N generated tokens.
Prints one JSON object: per-run figures and the medians, and the ratios
conclave / llama.cpp for prefill and decode tokens per second (> 1 means
conclave is faster).

  .venv/bin/python loadtest/bench_generate_vs_llamacpp.py [--runs 5]
      [--threads 2] [--tokens 128] [--model models/...gguf]
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess

import llama_cpp

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


def conclave_run(model, threads, tokens):
    out = subprocess.run(
        [str(BUILD / "bin" / "conclave-generate"), "--model", str(model),
         "--prompt", PROMPT, "--max-tokens", str(tokens), "--temperature", "0",
         "--ignore-eos", "--threads", str(threads), "--json"],
        check=True, capture_output=True)
    r = json.loads(out.stdout.decode("utf-8", errors="replace"))
    n_prompt = len(r["prompt_tokens"])
    return r["prompt_tokens"], {
        "prefill_tokens_per_second": n_prompt / r["prefill_seconds"],
        "decode_tokens_per_second": (len(r["tokens"]) - 1) / r["decode_seconds"],
    }


def llama_run(llm, prompt_ids, tokens):
    ctx = llm.ctx
    llm.reset()
    llama_cpp.llama_perf_context_reset(ctx)
    llm.eval(prompt_ids)
    tok = llm.sample(temp=0.0)
    for _ in range(tokens - 1):
        llm.eval([tok])
        tok = llm.sample(temp=0.0)
    perf = llama_cpp.llama_perf_context(ctx)
    return {
        "prefill_tokens_per_second": perf.n_p_eval / (perf.t_p_eval_ms / 1e3),
        "decode_tokens_per_second": perf.n_eval / (perf.t_eval_ms / 1e3),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    llm = llama_cpp.Llama(model_path=args.model, n_ctx=1024, n_batch=512,
                          n_threads=args.threads, n_threads_batch=args.threads,
                          flash_attn=False, verbose=False)
    runs = []
    for _ in range(args.runs):  # interleaved, so drift hits both alike
        prompt_ids, ours = conclave_run(args.model, args.threads, args.tokens)
        theirs = llama_run(llm, prompt_ids, args.tokens)
        runs.append({"conclave": ours, "llama_cpp": theirs})

    def median(engine, key):
        return statistics.median(r[engine][key] for r in runs)

    result = {
        "model": pathlib.Path(args.model).name,
        "threads": args.threads,
        "prompt_tokens": len(prompt_ids),
        "generated_tokens": args.tokens,
        "runs": runs,
        "median": {e: {k: median(e, k) for k in ("prefill_tokens_per_second",
                                                  "decode_tokens_per_second")}
                   for e in ("conclave", "llama_cpp")},
    }
    result["ratio_conclave_over_llama_cpp"] = {
        k: median("conclave", k) / median("llama_cpp", k)
        for k in ("prefill_tokens_per_second", "decode_tokens_per_second")}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

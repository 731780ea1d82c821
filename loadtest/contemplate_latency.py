#!/usr/bin/env python3
"""Latency of Contemplate with N agents against N=1 on the same questions,
one request at a time, printing one JSON object.

For each question the two requests run back to back, in alternating order,
so the machine's noise falls on both alike. Both use the same prompt path
(Contemplate, same answer format, temperature and seed), so the ratio is what
the extra agents cost: they share the prompt's KV blocks and decode in one
batch, and the request ends when its slowest agent does.

  .venv/bin/python loadtest/contemplate_latency.py --questions 20 --agents 8 \\
      [--max-tokens 192] [--server HOST:PORT]   # else it starts build/bin/conclave-server
  --few-shot K: eval_accuracy.py's K solved examples before the question and
  its stop "\n" (for a base model: --model models/gemma-3-270m-q4_k_m.gguf).

Prints per-N medians of end-to-end latency, time to the first agent_text
event, agent tokens per request and the slowest agent's tokens, and the
median of the per-question latency ratios.
"""
import argparse
import json
import pathlib
import statistics
import sys
import time

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import conclave_api  # noqa: E402
from eval_accuracy import FEW_SHOT, few_shot_stop, few_shot_turns  # noqa: E402


def run_one(api, stub, question, agents, args, seed):
    pb = api.pb
    request = pb.ContemplateRequest(
        messages=few_shot_turns(pb, question, args.few_shot),
        stop=few_shot_stop(args.few_shot), agents=agents, aggregator=pb.AGGREGATOR_MAJORITY,
        answer_format=pb.ANSWER_FORMAT_GSM8K, temperature=args.temperature,
        seed=seed, max_tokens=args.max_tokens, stream_agent_text=True)
    start = time.perf_counter()
    first_text, longest, final = None, 0, None
    for event in stub.Contemplate(request, timeout=args.timeout):
        kind = event.WhichOneof("event")
        if kind == "agent_text" and first_text is None:
            first_text = time.perf_counter() - start
        elif kind == "agent_finished":
            longest = max(longest, event.agent_finished.tokens)
        elif kind == "final_answer":
            final = event.final_answer
    return {"seconds": time.perf_counter() - start, "first_text": first_text,
            "agent_tokens": final.usage.agent_tokens, "longest_agent": longest}


def summary(rows):
    med = lambda key: statistics.median(r[key] for r in rows if r[key] is not None)  # noqa: E731
    return {"median_seconds": med("seconds"), "median_first_text_seconds": med("first_text"),
            "median_agent_tokens": med("agent_tokens"),
            "median_longest_agent_tokens": med("longest_agent")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(pathlib.Path(__file__).resolve().parent / "data" / "easy_arith.jsonl"))
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--server", help="HOST:PORT of a running server (else one is started)")
    ap.add_argument("--model", default=str(conclave_api.DEFAULT_MODEL))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--few-shot", type=int, default=0, choices=range(len(FEW_SHOT) + 1),
                    help="eval_accuracy.py's solved examples as earlier turns, with its stop")
    args = ap.parse_args()

    questions = [json.loads(line)["question"] for line in open(args.data) if line.strip()]
    questions = questions[:args.questions]
    api = conclave_api.load_stubs()
    server = None
    address = args.server
    if address is None:
        server = conclave_api.ServerProcess(
            pathlib.Path(args.model),
            ["--threads", str(args.threads), "--max-agents", str(args.agents)])
        address = server.address
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = api.grpc.ConclaveStub(channel)
            run_one(api, stub, questions[0], args.agents, args, 1)  # warm-up
            single, many = [], []
            for i, question in enumerate(questions):
                order = [(1, single), (args.agents, many)]
                if i % 2:
                    order.reverse()
                for agents, rows in order:
                    rows.append(run_one(api, stub, question, agents, args, 1000 + i))
    finally:
        if server is not None:
            server.stop()
    ratios = [m["seconds"] / s["seconds"] for s, m in zip(single, many)]
    print(json.dumps({
        "model": pathlib.Path(args.model).stem, "questions": len(questions),
        "agents": args.agents, "max_tokens": args.max_tokens, "threads": args.threads,
        "few_shot": args.few_shot,
        "n1": summary(single), f"n{args.agents}": summary(many),
        "median_latency_ratio": statistics.median(ratios),
        "ratio_of_medians": summary(many)["median_seconds"] / summary(single)["median_seconds"],
    }, indent=1))


if __name__ == "__main__":
    main()

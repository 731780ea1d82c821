#!/usr/bin/env python3
"""Accuracy harness: a JSONL file of {question, answer} through a conclave
server in each mode, printing one JSON object.

Configurations (--configs, comma-separated):
  instant      Generate, MODE_INSTANT, greedy: one answer per question
  single       Contemplate with one greedy agent: N=1 on the same prompt and
               extraction path as the N-agent configs
  majority     Contemplate, N agents, AGGREGATOR_MAJORITY
  confidence   Contemplate, AGGREGATOR_CONFIDENCE (DeepConf-style weighted vote)
  verifier     Contemplate, AGGREGATOR_VERIFIER (P("Yes") judging pass)
  synthesis    Contemplate, AGGREGATOR_SYNTHESIS (an aggregator agent writes the answer)
  consensus    majority + online consensus stopping
  lowconf      majority + online confidence (DeepConf) stopping
For each: accuracy, extraction failures, generated tokens (agents and
aggregator passes), tokens saved by stopping, wall time and mean latency.
Answers are GSM8K-style ("#### n"); the gold answer is the number after the
last "####" of the file's answer field, compared numerically.

  .venv/bin/python loadtest/eval_accuracy.py --data loadtest/data/easy_arith.jsonl \\
      --limit 100 --agents 8 [--server HOST:PORT]   # else it starts build/bin/conclave-server

--few-shot K puts K solved examples (FEW_SHOT) before the question as
earlier user/assistant turns, for base models that do not follow the
instruction (the Gemma 3 270M package: --few-shot 3). Each example's answer
is one line ending in "#### n", and every call then stops at the end of the
line (stop "\n", the examples' separator, as few-shot harnesses stop at
theirs): a base model writes on past its answer, into text it invents.

The default data set is loadtest/data/easy_arith.jsonl (one-step problems,
see make_easy_arith.py): the 135M default model solves almost no GSM8K
problem, so GSM8K (../shared/data/gsm8k/dev.jsonl) separates the modes only
on a larger model.
"""
import argparse
import concurrent.futures
import json
import pathlib
import re
import statistics
import sys
import time

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import conclave_api  # noqa: E402

INSTRUCTION = ("Think about the problem step by step, showing your reasoning. End your response "
               "with a final line of the form \"#### <number>\", where <number> is the final "
               "numeric answer only.")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# Solved examples for --few-shot, one per kind of problem in
# easy_arith.jsonl, with names and numbers it does not use: a base
# (pretrained-only) model such as the Gemma 3 270M package, which has no chat
# template and does not follow the instruction, continues the pattern.
FEW_SHOT = [
    ("Theo has 12 kites. Theo gets 5 more kites. How many kites does Theo have now?",
     "Theo starts with 12 kites and gets 5 more: 12 + 5 = 17. #### 17"),
    ("Nora has 40 stamps. Nora gives away 15 stamps. How many stamps does Nora have left?",
     "Nora starts with 40 stamps and gives away 15: 40 - 15 = 25. #### 25"),
    ("Omar has 3 boxes with 6 rocks in each box. How many rocks does Omar have in total?",
     "3 boxes of 6 rocks each: 3 * 6 = 18. #### 18"),
]
FEW_SHOT_STOP = ["\n"]  # the examples' answers are one line


def few_shot_turns(pb, question, k):
    """The question as chat turns, after the first k FEW_SHOT examples as
    earlier user/assistant turns."""
    turns = []
    for q, a in FEW_SHOT[:k]:
        turns += [pb.ChatMessage(role=pb.ROLE_USER, content=q),
                  pb.ChatMessage(role=pb.ROLE_ASSISTANT, content=a)]
    return turns + [pb.ChatMessage(role=pb.ROLE_USER, content=question)]


def few_shot_stop(k):
    """The stop strings of a run with k examples: none without examples."""
    return FEW_SHOT_STOP if k else []


def gold_answer(text):
    tail = text.rsplit("####", 1)[-1]
    m = NUMBER.search(tail)
    return to_number(m.group(0)) if m else None


def to_number(text):
    try:
        return float(text.replace(",", "").replace("$", "").strip())
    except ValueError:
        return None


def instant_answer(text):
    """The number on the last "####" line (as the server's GSM8K format)."""
    if "####" not in text:
        return None
    m = NUMBER.search(text.rsplit("####", 1)[-1].split("\n", 1)[0])
    return to_number(m.group(0)) if m else None


class Runner:
    def __init__(self, api, stub, args):
        self.api, self.stub, self.args = api, stub, args
        self.stop = few_shot_stop(args.few_shot)

    def question_turns(self, question):
        return few_shot_turns(self.api.pb, question, self.args.few_shot)

    def instant(self, i, question):
        pb = self.api.pb
        req = pb.GenerateRequest(
            mode=pb.MODE_INSTANT,
            messages=[pb.ChatMessage(role=pb.ROLE_SYSTEM, content=INSTRUCTION),
                      *self.question_turns(question)],
            sampling=pb.SamplingParams(temperature=0.0),
            max_tokens=self.args.max_tokens, stop=self.stop)
        text, generated = "", 0
        for resp in self.stub.Generate(req, timeout=self.args.timeout):
            if resp.HasField("delta"):
                text += resp.delta.text
            else:
                generated = resp.final.usage.generated_tokens
        answer = instant_answer(text)
        return {"answer": answer, "extracted": answer is not None, "generated": generated,
                "aggregator_tokens": 0, "saved": 0, "stopped": 0}

    def contemplate(self, i, question, aggregator, stopping, agents=None, temperature=None):
        pb = self.api.pb
        req = pb.ContemplateRequest(
            messages=self.question_turns(question),
            agents=agents or self.args.agents,
            aggregator=aggregator,
            answer_format=getattr(pb, "ANSWER_FORMAT_" + self.args.answer_format.upper()),
            temperature=self.args.temperature if temperature is None else temperature,
            seed=1000 + i,
            max_tokens=self.args.max_tokens, stop=self.stop)
        if stopping == "consensus":
            req.stopping.consensus.enabled = True
            req.stopping.consensus.min_finished = max(2, self.args.agents // 4)
            req.stopping.consensus.vote_share = 0.75
        elif stopping == "lowconf":
            req.stopping.confidence.enabled = True
            req.stopping.confidence.warmup_agents = max(1, self.args.agents // 4)
            req.stopping.confidence.keep_top_percent = 75
            req.stopping.confidence.window = 32
        final, stopped = None, 0
        for ev in self.stub.Contemplate(req, timeout=self.args.timeout):
            kind = ev.WhichOneof("event")
            if kind == "agent_stopped":
                stopped += 1
            elif kind == "final_answer":
                final = ev.final_answer
        answer = to_number(final.normalized_answer) if final.normalized_answer else None
        return {"answer": answer, "extracted": answer is not None,
                "generated": final.usage.generated_tokens,
                "aggregator_tokens": final.usage.aggregator_tokens,
                "saved": final.usage.saved_tokens_estimate, "stopped": stopped}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(pathlib.Path(__file__).resolve().parent / "data" / "easy_arith.jsonl"))
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--few-shot", type=int, default=0, choices=range(len(FEW_SHOT) + 1),
                    help="solved examples given as earlier chat turns (for base models)")
    ap.add_argument("--configs", default="instant,majority,confidence,verifier,synthesis,consensus,lowconf")
    ap.add_argument("--concurrency", type=int, default=2, help="questions in flight")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per request")
    ap.add_argument("--server", help="HOST:PORT of a running server (else one is started)")
    ap.add_argument("--model", default=str(conclave_api.DEFAULT_MODEL))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--answer-format", choices=["gsm8k", "auto"], default="gsm8k",
                    help="extraction of the Contemplate configs (auto: gsm8k, boxed, "
                         "\"Answer:\" line, then the last number)")
    args = ap.parse_args()

    problems = [json.loads(line) for line in open(args.data) if line.strip()][:args.limit]
    api = conclave_api.load_stubs()
    server = None
    address = args.server
    if address is None:
        server = conclave_api.ServerProcess(args.model, ["--threads", str(args.threads),
                                                         "--max-agents", str(max(8, args.agents))])
        address = server.address
    channel = grpc.insecure_channel(address)
    stub = api.grpc.ConclaveStub(channel)
    runner = Runner(api, stub, args)
    pb = api.pb
    configs = {
        "instant": lambda i, q: runner.instant(i, q),
        "single": lambda i, q: runner.contemplate(i, q, pb.AGGREGATOR_MAJORITY, None, 1, 0.0),
        "majority": lambda i, q: runner.contemplate(i, q, pb.AGGREGATOR_MAJORITY, None),
        "confidence": lambda i, q: runner.contemplate(i, q, pb.AGGREGATOR_CONFIDENCE, None),
        "verifier": lambda i, q: runner.contemplate(i, q, pb.AGGREGATOR_VERIFIER, None),
        "synthesis": lambda i, q: runner.contemplate(i, q, pb.AGGREGATOR_SYNTHESIS, None),
        "consensus": lambda i, q: runner.contemplate(i, q, pb.AGGREGATOR_MAJORITY, "consensus"),
        "lowconf": lambda i, q: runner.contemplate(i, q, pb.AGGREGATOR_MAJORITY, "lowconf"),
    }
    results = {}
    try:
        for name in args.configs.split(","):
            fn = configs[name]

            def one(item):
                i, p = item
                start = time.perf_counter()
                r = fn(i, p["question"])
                r["latency"] = time.perf_counter() - start
                r["correct"] = r["answer"] is not None and abs(r["answer"] - gold_answer(p["answer"])) < 1e-6
                return r

            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
                rows = list(pool.map(one, enumerate(problems)))
            wall = time.perf_counter() - start
            n = len(rows)
            results[name] = {
                "problems": n,
                "accuracy": sum(r["correct"] for r in rows) / n,
                "extraction_failures": sum(not r["extracted"] for r in rows),
                "generated_tokens": sum(r["generated"] for r in rows),
                "aggregator_tokens": sum(r["aggregator_tokens"] for r in rows),
                "saved_tokens_estimate": sum(r["saved"] for r in rows),
                "stopped_agents": sum(r["stopped"] for r in rows),
                "wall_seconds": wall,
                "mean_latency_seconds": statistics.mean(r["latency"] for r in rows),
            }
            print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    finally:
        channel.close()
        if server is not None:
            server.stop()
    print(json.dumps({"model": pathlib.Path(args.model).stem,
                      "data": pathlib.Path(args.data).name, "agents": args.agents,
                      "answer_format": args.answer_format, "few_shot": args.few_shot,
                      "stop": few_shot_stop(args.few_shot),
                      "max_tokens": args.max_tokens, "temperature": args.temperature,
                      "concurrency": args.concurrency, "results": results}, indent=2))


if __name__ == "__main__":
    main()

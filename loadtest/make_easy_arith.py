#!/usr/bin/env python3
"""Writes loadtest/data/easy_arith.jsonl: one-step arithmetic word problems.

SmolLM2-135M solves almost no GSM8K problem (they take 2-8 steps), so
comparing modes on GSM8K measures noise. These problems take one step
(add, subtract, or multiply small numbers) and are written like GSM8K's,
with the answer in GSM8K's form ("#### n"), so the same harness, answer
format and normalisation apply. Deterministic (fixed seed): the committed
file is exactly what this script writes.

  python3 loadtest/make_easy_arith.py
"""
import json
import pathlib
import random

NAMES = ["Sam", "Mia", "Leo", "Ana", "Tom", "Zoe", "Raj", "Ivy", "Max", "Eva"]
THINGS = ["apples", "marbles", "stickers", "books", "pencils", "coins", "shells", "cards"]


def problem(rng):
    name = rng.choice(NAMES)
    thing = rng.choice(THINGS)
    kind = rng.choice(["add", "sub", "mul"])
    if kind == "add":
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        q = f"{name} has {a} {thing}. {name} gets {b} more {thing}. How many {thing} does {name} have now?"
        return q, a + b
    if kind == "sub":
        a = rng.randint(10, 60)
        b = rng.randint(1, a - 1)
        q = f"{name} has {a} {thing}. {name} gives away {b} {thing}. How many {thing} does {name} have left?"
        return q, a - b
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    q = f"{name} has {a} bags with {b} {thing} in each bag. How many {thing} does {name} have in total?"
    return q, a * b


def main():
    rng = random.Random(20261123)
    out = pathlib.Path(__file__).resolve().parent / "data" / "easy_arith.jsonl"
    out.parent.mkdir(exist_ok=True)
    with out.open("w") as f:
        for _ in range(200):
            q, a = problem(rng)
            f.write(json.dumps({"question": q, "answer": f"#### {a}"}) + "\n")
    print(out)


if __name__ == "__main__":
    main()

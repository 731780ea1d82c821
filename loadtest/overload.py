"""Overload behaviour of conclave-server under CONTEMPLATING load, with
build/bin/conclave-load (docs/overload.md).

  1. sustainable rate: closed loop at a few concurrencies (--concurrencies,
     --probe-seconds each). The rate of a probe is what the server
     completed in its steady window: the server's own counters (calls
     ended OK, tokens generated) read after the first third of the probe
     and again at its end, so neither the ramp-up nor the drain (when
     fewer calls share the batch and each runs faster) counts. The best of
     the probes is the rate the server sustains (or give it: --rate). The
     engine runs 64 sequences, 8 contemplations of 8 agents: probes past 8
     show where throughput stops growing.
  2. open loop (Poisson) at 50%, 90% and 200% of it, then 50% again
     (recovery), --phase-seconds each
  3. with --soak-minutes M: open loop at --soak-fraction of it for M minutes,
     and the server's RSS growth from the first minute to the last

Throughout, the server's RSS (/proc/PID/status VmRSS) is sampled every
second. One JSON object on stdout: the server's flags, the probes, and for
every phase conclave-load's report, the RSS seen (min, max, first, last, in
KiB) and the server's queue metrics after its drain. Progress goes to
stderr. The server is started here on 127.0.0.1 and free ports (stopped at
the end); its log is kept at the path in the report.

Default run: 4 probes and 4 phases of 30 s each, about 5 minutes in all.

  .venv/bin/python loadtest/overload.py
  .venv/bin/python loadtest/overload.py --phase-seconds 120 --soak-minutes 30 \\
      --server-arg=--max-queued-requests=16
"""
import argparse
import itertools
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import conclave_api  # noqa: E402

PHASES = [("50%", 0.5), ("90%", 0.9), ("200%", 2.0), ("recovery 50%", 0.5)]
QUEUE_METRICS = ("conclave_num_requests_queued", "conclave_num_requests_waiting",
                 "conclave_num_requests_running", "conclave_num_sequences_running",
                 "conclave_kv_blocks_used")


def log(message):
    print(f"[overload] {message}", file=sys.stderr, flush=True)


def rss_kib(pid):
    """VmRSS of `pid` in KiB, None once the process is gone."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Samples a process's RSS every `interval` seconds on a thread."""

    def __init__(self, pid, interval=1.0):
        self.pid = pid
        self.interval = interval
        self.samples = []  # (monotonic seconds, KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            kib = rss_kib(self.pid)
            if kib is not None:
                self.samples.append((time.monotonic(), kib))
            self._stop.wait(self.interval)

    def between(self, start, end):
        return [kib for t, kib in self.samples if start <= t <= end]

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)


def summary(values):
    if not values:
        return None
    return {"min": min(values), "max": max(values), "first": values[0], "last": values[-1],
            "mean": round(sum(values) / len(values)), "samples": len(values)}


def queue_metrics(server):
    samples = conclave_api.read_metrics(server.metrics_address)
    out = {name: sum(v for n, _, v in samples if n == name) for name in QUEUE_METRICS}
    for reason in ("queue_full", "queue_timeout"):
        out[f"conclave_overload_rejections_total{{reason={reason}}}"] = sum(
            v for n, l, v in samples
            if n == "conclave_overload_rejections_total" and l.get("reason") == reason)
    return out


def run_load(args, target, load_args, timeout, seed, window=None):
    """Runs conclave-load and returns its JSON report. With `window`
    (seconds after the start, a pair) and `server`, also returns the
    server's completed calls and generated tokens per second between the
    two instants: window=(w0, w1, server)."""
    binary = conclave_api.build_dir() / "bin" / "conclave-load"
    cmd = [str(binary), "--target", target, "--mix", "contemplate=1", "--agents",
           str(args.agents), "--max-tokens", str(args.max_tokens),
           "--drain-timeout", str(args.drain_timeout), "--seed", str(seed), *load_args]
    if args.thinking_budget:
        cmd += ["--thinking-budget", str(args.thinking_budget)]
    if args.prompts:
        cmd += ["--prompts", args.prompts]
    log(" ".join(cmd[1:]))
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    steady = None
    if window:
        w0, w1, server = window
        time.sleep(max(0.0, start + w0 - time.monotonic()))
        first = (time.monotonic(), served_counters(server))
        time.sleep(max(0.0, start + w1 - time.monotonic()))
        last = (time.monotonic(), served_counters(server))
        seconds = last[0] - first[0]
        steady = {"window_s": round(seconds, 3),
                  "completed": last[1][0] - first[1][0],
                  "rate_rps": round((last[1][0] - first[1][0]) / seconds, 4),
                  "agent_tokens_per_s": round((last[1][1] - first[1][1]) / seconds, 1)}
    stdout, stderr = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"conclave-load exited {proc.returncode}: {stderr}")
    report = json.loads(stdout)
    if steady is not None:
        report["server_steady_window"] = steady
    return report


def served_counters(server):
    """(calls ended OK, tokens generated) so far, from the server's metrics."""
    samples = conclave_api.read_metrics(server.metrics_address)
    ok = sum(v for n, _, v in samples if n == "conclave_request_success_total")
    tokens = sum(v for n, _, v in samples if n == "conclave_generation_tokens_total")
    return ok, tokens


def phase(args, server, sampler, name, load_args, seconds, seed, steady_window=False):
    """Runs conclave-load, then reports it with the RSS seen meanwhile; with
    steady_window, also the server's completions over the last two thirds
    of the load (before the drain)."""
    start = time.monotonic()
    window = (seconds / 3, seconds, server) if steady_window else None
    report = run_load(args, server.address, load_args,
                      timeout=seconds + args.drain_timeout + 120, seed=seed, window=window)
    end = time.monotonic()
    result = {"phase": name, "load": report, "rss_kib": summary(sampler.between(start, end)),
              "server_after": queue_metrics(server)}
    e2e = report.get("e2e_ms", {})
    log(f"{name}: {report['requests']['by_status']} throughput {report['throughput_rps']} rps, "
        f"e2e p50 {e2e.get('p50')} p99 {e2e.get('p99')} ms, rss {result['rss_kib']}")
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(conclave_api.DEFAULT_MODEL))
    ap.add_argument("--threads", type=int, default=0, help="server CPU threads (0: all)")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra conclave-server flag, e.g. --server-arg=--max-queued-requests=16")
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64, help="per agent")
    ap.add_argument("--thinking-budget", type=int, default=0)
    ap.add_argument("--prompts", default="", help="JSONL of {question} (default: built-in)")
    ap.add_argument("--concurrencies", default="2,4,8,16",
                    help="closed-loop probes for the sustainable rate")
    ap.add_argument("--probe-seconds", type=float, default=30)
    ap.add_argument("--rate", type=float, default=0,
                    help="the sustainable rate in contemplations/s (skips the probes)")
    ap.add_argument("--phase-seconds", type=float, default=30)
    ap.add_argument("--drain-timeout", type=float, default=120)
    ap.add_argument("--soak-minutes", type=float, default=0)
    ap.add_argument("--soak-fraction", type=float, default=0.5,
                    help="soak rate as a fraction of the sustainable rate")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    log_path = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"overload_server_{os.getpid()}.log"
    server_args = ["--max-agents", str(max(8, args.agents))]
    if args.threads:
        server_args += ["--threads", str(args.threads)]
    server_args += args.server_arg
    out = {"server": {"model": args.model, "args": server_args, "log": str(log_path)}}
    with conclave_api.ServerProcess(args.model, server_args, log_path=str(log_path)) as server:
        sampler = RssSampler(server.proc.pid)
        # Each run its own seed, so that a phase's arrivals and questions are
        # not the previous phase's, scaled.
        seeds = itertools.count(args.seed)
        try:
            out["server"]["pid"] = server.proc.pid
            out["server"]["rss_kib_at_start"] = rss_kib(server.proc.pid)
            rate = args.rate
            if rate <= 0:
                probes = []
                for c in [int(x) for x in args.concurrencies.split(",") if x]:
                    probe = phase(args, server, sampler, f"closed c={c}",
                                  ["--concurrency", str(c), "--duration", str(args.probe_seconds)],
                                  args.probe_seconds, next(seeds), steady_window=True)
                    probe["rate_rps"] = probe["load"]["server_steady_window"]["rate_rps"]
                    log(f"closed c={c}: {probe['rate_rps']} contemplations/s")
                    probes.append(probe)
                out["probes"] = probes
                rate = max(p["rate_rps"] for p in probes)
                if rate <= 0:
                    raise RuntimeError("no contemplation completed in the probes")
            out["sustainable_rate_rps"] = rate
            log(f"sustainable rate: {rate} contemplations/s")
            out["phases"] = []
            for name, fraction in PHASES:
                out["phases"].append(phase(
                    args, server, sampler, name,
                    ["--rate", f"{rate * fraction:.6g}", "--duration", str(args.phase_seconds)],
                    args.phase_seconds, next(seeds)))
            if args.soak_minutes > 0:
                seconds = args.soak_minutes * 60
                start = time.monotonic()
                soak = phase(args, server, sampler, "soak",
                             ["--rate", f"{rate * args.soak_fraction:.6g}",
                              "--duration", str(seconds)], seconds, next(seeds))
                first = summary(sampler.between(start, start + 60))
                last = summary(sampler.between(start + seconds - 60, start + seconds))
                soak["rss_first_minute_kib"] = first
                soak["rss_last_minute_kib"] = last
                if first and last:
                    soak["rss_growth_kib"] = last["mean"] - first["mean"]
                out["soak"] = soak
        finally:
            sampler.stop()
        out["server"]["rss_kib_at_end"] = rss_kib(server.proc.pid)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

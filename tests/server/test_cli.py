"""build/bin/conclave, the CLI client, against a real server: generate and
contemplate in --json mode (one proto3 JSON object per streamed message),
--stop with its C escapes, and the exit codes (1: the RPC failed, with the
gRPC status; 2: bad usage)."""

import json
import subprocess

import pytest

from conftest import conclave_api

CLI_TIMEOUT_S = 180
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def cli(server, *args):
    path = conclave_api.build_dir() / "bin" / "conclave"
    if not path.exists():
        pytest.skip(f"{path} not built")
    return subprocess.run([str(path), "--server", server.address, "--timeout", "170", *args],
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def json_lines(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_generate_json_streams_deltas_then_the_final_message(server):
    result = cli(server, "generate", "--json", "--max-tokens", "16", "--temperature", "0",
                 "Count from one to ten.")
    assert result.returncode == 0, result.stderr
    messages = json_lines(result.stdout)
    assert "final" in messages[-1] and all("delta" in m for m in messages[:-1])
    final = messages[-1]["final"]
    assert final["usage"]["generated_tokens"] <= 16


def test_generate_stop_decodes_its_escapes_and_ends_the_text(server):
    free = cli(server, "generate", "--json", "--max-tokens", "48", "--temperature", "0",
               "List three fruits, one per line.")
    assert free.returncode == 0, free.stderr
    free_text = "".join(m["delta"].get("text", "") for m in json_lines(free.stdout)[:-1])
    assert "\n" in free_text, "no newline in 48 tokens: the test checks nothing"
    cut = cli(server, "generate", "--json", "--max-tokens", "48", "--temperature", "0",
              "--stop", "\\n", "List three fruits, one per line.")
    assert cut.returncode == 0, cut.stderr
    messages = json_lines(cut.stdout)
    text = "".join(m["delta"].get("text", "") for m in messages[:-1])
    assert text == free_text.split("\n", 1)[0]
    assert messages[-1]["final"]["finish_reason"] == "FINISH_REASON_STOP_STRING"


def test_contemplate_json_reports_every_agent_and_the_final_answer(server):
    result = cli(server, "contemplate", "--json", "--agents", "2", "--max-tokens", "32",
                 "--seed", "5", "--answer-format", "number", "--stop", "\\n\\n", QUESTION)
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    started = [e["agent_started"] for e in events if "agent_started" in e]
    assert sorted(s.get("agent", 0) for s in started) == [0, 1]
    assert [s["seed"] for s in sorted(started, key=lambda s: s.get("agent", 0))] == ["5", "6"]
    assert "final_answer" in events[-1]
    assert events[-1]["final_answer"]["usage"]["agent_tokens"] <= 64


def test_contemplate_prints_legible_events_without_json(server):
    result = cli(server, "contemplate", "--agents", "2", "--max-tokens", "24", QUESTION)
    assert result.returncode == 0, result.stderr
    assert "agent 0" in result.stdout and "agent 1" in result.stdout


@pytest.mark.parametrize("args, code, message", [
    (["contemplate", "--agents", "99", QUESTION], 1, "INVALID_ARGUMENT"),
    (["generate", "--stop", "\\q", "hello"], 2, "--stop has a bad escape sequence"),
    (["contemplate", "--aggregator", "loudest", QUESTION], 2, "--aggregator"),
], ids=["too-many-agents", "bad-stop-escape", "unknown-aggregator"])
def test_errors_exit_with_their_code_and_say_why(server, args, code, message):
    result = cli(server, *args)
    assert result.returncode == code
    assert message in result.stderr

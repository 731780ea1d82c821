"""`conclave keys issue|revoke|list` on a temporary key store, through the
real build/bin/conclave binary ($CONCLAVE_BUILD_DIR/bin, default
<repo>/build/bin; the tests skip when it is not built). No server runs: the
commands work on the file alone."""

import json
import os
import re
import stat
import subprocess

import pytest

import conclave_api

KEY_RE = re.compile(r"^cnk_([a-z2-7]{12})_([0-9A-Za-z]{43})$")
TIMEOUT_S = 30


@pytest.fixture
def conclave():
    path = conclave_api.build_dir() / "bin" / "conclave"
    if not path.exists():
        pytest.skip(f"{path} not built")
    return path


@pytest.fixture
def store(tmp_path):
    return tmp_path / "keys.json"


def run(conclave, *args):
    return subprocess.run([str(conclave), "keys", *map(str, args)], capture_output=True,
                          text=True, timeout=TIMEOUT_S)


def issue(conclave, store, name, *flags):
    result = run(conclave, "issue", "--store", store, "--name", name, *flags)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    match = KEY_RE.match(lines[0])
    assert match, f"not a key: {lines[0]!r}"
    return lines[0], match.group(1), match.group(2), result


def test_issue_prints_the_key_once_and_stores_only_its_hash(conclave, store):
    key, key_id, secret, result = issue(conclave, store, "alice")
    assert "will not be shown again" in result.stderr
    assert key_id in result.stderr
    assert secret not in result.stderr
    text = store.read_text()
    assert secret not in text and key not in text
    data = json.loads(text)
    assert data["version"] == 1
    [record] = data["keys"]
    assert record["id"] == key_id
    assert record["name"] == "alice"
    assert record["revoked"] is False
    assert re.fullmatch(r"[0-9a-f]{32}", record["salt"])
    assert re.fullmatch(r"[0-9a-f]{64}", record["hash"])
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    # A second key: another id and secret, both keys in the store.
    key2, key_id2, secret2, _ = issue(conclave, store, "bob")
    assert key_id2 != key_id and secret2 != secret
    assert [k["id"] for k in json.loads(store.read_text())["keys"]] == [key_id, key_id2]


def test_list_never_shows_a_secret_salt_or_hash(conclave, store):
    keys = [issue(conclave, store, name) for name in ("alice", "bob")]
    records = json.loads(store.read_text())["keys"]
    for flags in ([], ["--json"]):
        result = run(conclave, "list", "--store", store, *flags)
        assert result.returncode == 0, result.stderr
        for key, key_id, secret, _ in keys:
            assert key_id in result.stdout
            assert secret not in result.stdout and secret not in result.stderr
        for record in records:
            assert record["salt"] not in result.stdout
            assert record["hash"] not in result.stdout
    listed = json.loads(run(conclave, "list", "--store", store, "--json").stdout)["keys"]
    assert [(k["id"], k["name"], k["revoked"]) for k in listed] == \
        [(keys[0][1], "alice", False), (keys[1][1], "bob", False)]
    assert all(set(k) <= {"id", "name", "created", "revoked", "revoked_at", "limits"}
               for k in listed)


def test_limits_given_at_issue_are_stored_and_listed(conclave, store):
    _, key_id, _, _ = issue(conclave, store, "carol", "--requests-per-minute", "30",
                            "--tokens-per-minute", "0", "--max-concurrent", "2",
                            "--max-agents", "4", "--max-thinking-budget", "1024")
    expected = {"requests_per_minute": 30, "tokens_per_minute": 0, "max_concurrent_requests": 2,
                "max_agents": 4, "max_thinking_budget": 1024}
    assert json.loads(store.read_text())["keys"][0]["limits"] == expected
    [listed] = json.loads(run(conclave, "list", "--store", store, "--json").stdout)["keys"]
    assert listed["limits"] == expected
    table = run(conclave, "list", "--store", store).stdout
    assert "max_agents=4" in table and "requests_per_minute=30" in table


def test_a_revoked_key_shows_up_as_revoked(conclave, store):
    _, alice, _, _ = issue(conclave, store, "alice")
    _, bob, _, _ = issue(conclave, store, "bob")
    result = run(conclave, "revoke", "--store", store, alice)
    assert result.returncode == 0, result.stderr
    assert alice in result.stderr
    listed = {k["id"]: k for k in
              json.loads(run(conclave, "list", "--store", store, "--json").stdout)["keys"]}
    assert listed[alice]["revoked"] is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed[alice]["revoked_at"])
    assert listed[bob]["revoked"] is False and "revoked_at" not in listed[bob]
    table = run(conclave, "list", "--store", store).stdout.splitlines()
    assert any(line.startswith(alice) and " revoked " in line for line in table), table
    assert any(line.startswith(bob) and " active " in line for line in table), table
    # Revoking again changes nothing and is not an error.
    before = store.read_text()
    again = run(conclave, "revoke", "--store", store, alice)
    assert again.returncode == 0, again.stderr
    assert "already revoked" in again.stderr
    assert store.read_text() == before


def test_revoking_an_unknown_id_fails(conclave, store):
    issue(conclave, store, "alice")
    result = run(conclave, "revoke", "--store", store, "zzzzzzzzzzzz")
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr and "zzzzzzzzzzzz" in result.stderr


def test_revoke_takes_the_id_and_never_repeats_a_whole_key(conclave, store):
    key, _, secret, _ = issue(conclave, store, "alice")
    result = run(conclave, "revoke", "--store", store, key)
    assert result.returncode == 2
    assert secret not in result.stderr and secret not in result.stdout
    assert "id" in result.stderr


@pytest.mark.parametrize("args, says", [
    ([], "subcommand"),
    (["rotate", "--store", "S"], "unknown keys subcommand"),
    (["issue", "--name", "alice"], "--store"),
    (["issue", "--store", "S"], "--name"),
    (["issue", "--store", "S", "--name", "alice", "--max-agents", "-1"], "max_agents=-1"),
    (["issue", "--store", "S", "--name", "alice", "extra"], "takes no arguments"),
    (["revoke", "--store", "S"], "one key id"),
    (["revoke", "--store", "S", "NOT-AN-ID"], "not a key id"),
    (["list"], "--store"),
])
def test_bad_usage_exits_2_with_a_message(conclave, store, args, says):
    result = run(conclave, *[str(store) if a == "S" else a for a in args])
    assert result.returncode == 2, result
    assert says in result.stderr
    assert not store.exists()


def test_a_missing_or_broken_store_is_reported_and_left_alone(conclave, store):
    missing = run(conclave, "list", "--store", store)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    store.write_text('{"version": 1, "keys": [')
    for args in (["list"], ["issue", "--name", "alice"]):
        result = run(conclave, *args, "--store", store)
        assert result.returncode == 1
        assert "INVALID_ARGUMENT" in result.stderr and str(store) in result.stderr
        assert result.stdout == ""
    assert store.read_text() == '{"version": 1, "keys": ['

"""conclave-tokenize must produce llama.cpp's token ids, and decode back.

Run: CONCLAVE_BUILD_DIR=build-tok .venv/bin/python -m pytest tests/parity/test_tokenizer_parity.py
"""

import ctypes
import json
import subprocess

import pytest

from conftest import binary
from corpus import CORPUS, INVALID_UTF8

ALL_INPUTS = [s.encode("utf-8") for s in CORPUS] + INVALID_UTF8


def conclave_encode(model_path, texts, *flags):
    """Ids for each byte string in `texts`, via conclave-tokenize --hex_lines."""
    stdin = "".join(t.hex() + "\n" for t in texts)
    out = subprocess.run(
        [binary("conclave-tokenize"), "--model", model_path, "--hex_lines", *flags],
        input=stdin.encode(), capture_output=True, check=True, timeout=300)
    lines = out.stdout.decode().splitlines()
    assert len(lines) == len(texts)
    return [json.loads(line) for line in lines]


def conclave_decode(model_path, id_lists):
    stdin = "".join(json.dumps(ids) + "\n" for ids in id_lists)
    out = subprocess.run(
        [binary("conclave-tokenize"), "--model", model_path, "--hex_lines", "--decode"],
        input=stdin.encode(), capture_output=True, check=True, timeout=300)
    return [bytes.fromhex(line) for line in out.stdout.decode().splitlines()]


def llama_pieces(llm, llama_cpp, ids):
    """Concatenated llama_token_to_piece(special=True) of `ids`."""
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    out = b""
    buf = (ctypes.c_char * 1024)()
    for tok in ids:
        n = llama_cpp.llama_token_to_piece(vocab, tok, buf, len(buf), 0, True)
        assert 0 <= n <= len(buf)
        out += bytes(buf[:n])
    return out


def describe(mismatches):
    return "\n".join(f"{text!r}\n  conclave {ours}\n  llama    {theirs}"
                     for text, ours, theirs in mismatches[:10])


@pytest.mark.parametrize("parse_special", [True, False], ids=["special", "no_special"])
def test_ids_match_llama_cpp(model_path, llama_vocab, parse_special):
    flags = [] if parse_special else ["--no-parse-special"]
    ours = conclave_encode(model_path, ALL_INPUTS, *flags)
    mismatches = []
    for text, got in zip(ALL_INPUTS, ours):
        want = llama_vocab.tokenize(text, add_bos=True, special=parse_special)
        if got != want:
            mismatches.append((text, got, want))
    assert not mismatches, (
        f"{len(mismatches)}/{len(ALL_INPUTS)} differ:\n" + describe(mismatches))


def test_ids_without_bos_match_llama_cpp(model_path, llama_vocab):
    ours = conclave_encode(model_path, ALL_INPUTS, "--no-special")
    mismatches = [(t, got, llama_vocab.tokenize(t, add_bos=False, special=True))
                  for t, got in zip(ALL_INPUTS, ours)]
    mismatches = [m for m in mismatches if m[1] != m[2]]
    assert not mismatches, describe(mismatches)


def test_decode_round_trips(model_path, llama_vocab, llama_cpp_module):
    texts = [s.encode("utf-8") for s in CORPUS]
    id_lists = conclave_encode(model_path, texts, "--no-special")
    decoded = conclave_decode(model_path, id_lists)
    failures = []
    for text, ids, got in zip(texts, id_lists, decoded):
        theirs = llama_pieces(llama_vocab, llama_cpp_module, ids)
        assert got == theirs, f"decode of {text!r} differs from llama.cpp's pieces"
        # Round trip wherever llama.cpp's own pieces round-trip.
        if theirs == text and got != text:
            failures.append(text)
    assert not failures, failures


def test_every_token_piece_matches_llama_cpp(model_path, llama_vocab, llama_cpp_module):
    n_vocab = llama_vocab.n_vocab()
    ids = list(range(n_vocab))
    chunk = 4096
    for start in range(0, n_vocab, chunk):
        part = ids[start:start + chunk]
        ours = conclave_decode(model_path, [[i] for i in part])
        for tok, got in zip(part, ours):
            want = llama_pieces(llama_vocab, llama_cpp_module, [tok])
            assert got == want, f"token {tok}: {got!r} != {want!r}"


def test_special_ids_and_eog_set_match_llama_cpp(model_path, llama_vocab, llama_cpp_module):
    out = subprocess.run(
        [binary("conclave-tokenize"), "--model", model_path, "--info"],
        capture_output=True, check=True, timeout=120)
    info = json.loads(out.stdout)
    vocab = llama_cpp_module.llama_model_get_vocab(llama_vocab.model)
    assert info["vocab_size"] == llama_vocab.n_vocab()
    assert info["bos"] == llama_vocab.token_bos()
    assert info["eos"] == llama_vocab.token_eos()
    assert info["add_bos"] == llama_cpp_module.llama_vocab_get_add_bos(vocab)
    assert info["add_eos"] == llama_cpp_module.llama_vocab_get_add_eos(vocab)
    eog = [i for i in range(llama_vocab.n_vocab())
           if llama_cpp_module.llama_vocab_is_eog(vocab, i)]
    assert info["eog"] == eog

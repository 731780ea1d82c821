#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

    .venv/bin/python fuzz/make_corpus.py

Deterministic: the same files every run. It writes only seed_* files (and
overwrites them); the regress_* files beside them are inputs that once found
a bug (docs/fuzzing.md) and are kept by hand. Needs grpcio-tools and protobuf
(the test venv) for the request seeds; stubs are generated into a temporary
directory. Every seed stays small (< 64 KiB): libFuzzer mutates them.
"""
import importlib
import json
import pathlib
import struct
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
CORPUS = REPO / "fuzz" / "corpus"

# --- GGUF (ggml docs/gguf.md; ../shared/REFERENCE.md section 1) -------------

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FORMATS = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i",
                  F32: "<f", BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml type id: (elements per block, bytes per block)
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0 = 0, 1, 2, 3, 8
BLOCKS = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_Q4_0: (32, 18), GGML_Q4_1: (32, 20),
          GGML_Q8_0: (32, 34)}


def gguf_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_value(vtype, value):
    if vtype == STRING:
        return gguf_string(value)
    if vtype == ARRAY:
        etype, items = value
        out = struct.pack("<IQ", etype, len(items))
        return out + b"".join(gguf_value(etype, v) for v in items)
    return struct.pack(SCALAR_FORMATS[vtype], value)


def tensor_bytes(ggml_type, dims):
    elems, nbytes = BLOCKS[ggml_type]
    n = 1
    for d in dims:
        n *= d
    assert dims[0] % elems == 0
    return n // elems * nbytes


def gguf(kvs, tensors=(), version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims, ggml_type)], data a
    deterministic byte pattern (q8_0/q4 scales stay small halves)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, vtype, value in kvs:
        out += gguf_string(key) + struct.pack("<I", vtype) + gguf_value(vtype, value)
    offset = 0
    layout = []
    for name, dims, ggml_type in tensors:
        out += gguf_string(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml_type, offset)
        size = tensor_bytes(ggml_type, dims)
        layout.append(size)
        offset += (size + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    for i, size in enumerate(layout):
        data = bytes((7 * j + i) % 61 for j in range(size))
        out += data + b"\0" * (-len(data) % alignment)
    return out


def gpt2_alphabet():
    """The GPT-2 byte -> unicode character table (engine/tokenizer/unicode.cc)."""
    printable = [b for b in range(256)
                 if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(0x100 + extra)
            extra += 1
    return table


def tiny_llama_kvs(vocab_size):
    return [
        ("general.architecture", STRING, "llama"),
        ("general.name", STRING, "tiny fuzz seed"),
        ("llama.block_count", U32, 1),
        ("llama.context_length", U32, 64),
        ("llama.embedding_length", U32, 32),
        ("llama.feed_forward_length", U32, 32),
        ("llama.attention.head_count", U32, 2),
        ("llama.attention.head_count_kv", U32, 1),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("llama.rope.freq_base", F32, 10000.0),
        ("llama.vocab_size", U32, vocab_size),
    ]


def tiny_llama_tensors(vocab_size):
    t = [("token_embd.weight", [32, vocab_size], GGML_Q8_0),
         ("output_norm.weight", [32], GGML_F32)]
    for name, dims, kind in [("attn_norm", [32], GGML_F32), ("attn_q", [32, 32], GGML_Q8_0),
                             ("attn_k", [32, 16], GGML_Q8_0), ("attn_v", [32, 16], GGML_Q8_0),
                             ("attn_output", [32, 32], GGML_Q8_0),
                             ("ffn_norm", [32], GGML_F32), ("ffn_gate", [32, 32], GGML_Q4_0),
                             ("ffn_up", [32, 32], GGML_Q4_1), ("ffn_down", [32, 32], GGML_Q8_0)]:
        t.append((f"blk.0.{name}.weight", dims, kind))
    return t


def gguf_seeds():
    seeds = {}
    seeds["seed_empty_v3.gguf"] = gguf([])
    seeds["seed_empty_v2.gguf"] = gguf([], version=2)
    every_type = [
        ("u8", U8, 200), ("i8", I8, -5), ("u16", U16, 60000), ("i16", I16, -300),
        ("u32", U32, 4000000000), ("i32", I32, -7), ("f32", F32, 0.5), ("bool", BOOL, True),
        ("string", STRING, "h\u00e9llo"), ("u64", U64, 2**63 + 1), ("i64", I64, -(2**40)),
        ("f64", F64, -2.25),
        ("array.i32", ARRAY, (I32, [1, -2, 3])), ("array.f32", ARRAY, (F32, [0.0, -1.5])),
        ("array.bool", ARRAY, (BOOL, [True, False])),
        ("array.string", ARRAY, (STRING, ["a", "", "\u2581b"])),
        ("array.nested", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["x"])])),
        ("array.empty", ARRAY, (U64, [])),
    ]
    seeds["seed_metadata_every_type.gguf"] = gguf(every_type)
    tensors = [("a", [32, 2], GGML_Q8_0), ("b", [7], GGML_F32), ("c", [64, 1, 1, 2], GGML_Q4_1),
               ("d", [5, 3], GGML_F16), ("e", [32], GGML_Q4_0)]
    seeds["seed_tensors_align64.gguf"] = gguf([("general.alignment", U32, 64)], tensors,
                                              alignment=64)
    seeds["seed_tensors.gguf"] = gguf([], tensors)

    # A whole tiny model: llama metadata, byte-level BPE vocab (the 256 byte
    # characters, a few merges, three control tokens) and every tensor.
    alphabet = gpt2_alphabet()
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens += [alphabet[b] for b in range(256)]
    merges = ["h e", "l l", "ll o", "he llo", "\u0120 w", "\u0120w o", "r l", "\u010a \u010a"]
    tokens += [m.replace(" ", "") for m in merges]
    types = [3, 3, 3] + [1] * (len(tokens) - 3)
    bpe = tiny_llama_kvs(len(tokens)) + [
        ("tokenizer.ggml.model", STRING, "gpt2"),
        ("tokenizer.ggml.pre", STRING, "smollm"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
        ("tokenizer.ggml.token_type", ARRAY, (I32, types)),
        ("tokenizer.ggml.merges", ARRAY, (STRING, merges)),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.add_bos_token", BOOL, False),
    ]
    seeds["seed_tiny_llama_bpe.gguf"] = gguf(bpe, tiny_llama_tensors(len(tokens)))

    # A SentencePiece-style vocab alone (no tensors): unknown, control, the
    # 256 byte tokens and scored pieces.
    pieces = [("\u2581", -1.0), ("\u2581h", -2.0), ("he", -3.0), ("llo", -2.5),
              ("\u2581hello", -1.5), ("\u2581w", -2.0), ("or", -3.0), ("ld", -3.0)]
    spm_tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    spm_tokens += [p for p, _ in pieces]
    spm = [
        ("general.architecture", STRING, "llama"),
        ("tokenizer.ggml.model", STRING, "llama"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, spm_tokens)),
        ("tokenizer.ggml.scores", ARRAY, (F32, [0.0] * 259 + [s for _, s in pieces])),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [2, 3, 3] + [6] * 256 + [1] * len(pieces))),
        ("tokenizer.ggml.add_space_prefix", BOOL, True),
    ]
    seeds["seed_spm_vocab.gguf"] = gguf(spm)

    # Truncated copies: inside the header, the metadata and the tensor data.
    meta = seeds["seed_metadata_every_type.gguf"]
    seeds["seed_truncated_header.gguf"] = meta[:20]
    seeds["seed_truncated_metadata.gguf"] = meta[:len(meta) // 2]
    data = seeds["seed_tensors.gguf"]
    seeds["seed_truncated_tensor_data.gguf"] = data[:len(data) - 40]
    return seeds


# --- tokenizer: selector byte + text (even) or int32 ids (odd) -------------

def tokenizer_seeds():
    texts = {
        "english": b"Hello world! How are you doing today?",
        "chat": b"<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n"
                b"What is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "endoftext": b"a<|endoftext|>b<|im_end|><|im_start|>",
        "digits": b"123456789012345 and 3.14159, -42",
        "whitespace": b"  leading\t\ttabs\n\n\nnew lines \r\n   trailing   ",
        "contractions": b"I'm it's they're WE'VE you'll she'd 'S",
        "code": b"def f(x):\n    return x ** 2  # square\n",
        "unicode": "caf\u00e9 na\u00efve e\u0301 \u4f60\u597d\uff0c\u4e16\u754c "
                   "\u0645\u0631\u062d\u0628\u0627 \u0928\u092e\u0938 "
                   "\U0001F468\u200d\U0001F469\u200d\U0001F467 \U0001F1FA\U0001F1F8".encode(),
        "invalid_utf8": b"a\xffb\xe4\xb8 \x80lone \xc0\x80over \xed\xa0\x80sur \xf4\x90\x80\x80big",
        "control_bytes": b"\x00\x01\x04\x06\x13\x14\x16\x1d\x7f end",
    }
    seeds = {}
    for name, text in texts.items():
        seeds[f"seed_encode_{name}"] = bytes([0]) + text
        seeds[f"seed_encode_special_{name}"] = bytes([6]) + text  # add_special, parse_special
    ids = {
        "valid": [19556, 905, 17, 216, 1, 2, 0],
        "out_of_range": [-1, 49152, 2**31 - 1, -(2**31), 100000],
        "byte_pieces": list(range(180, 260)),
    }
    for name, values in ids.items():
        seeds[f"seed_decode_{name}"] = bytes([1]) + b"".join(struct.pack("<i", v)
                                                             for v in values)
    return seeds


# --- answer extraction: agent output texts ---------------------------------

def answer_seeds():
    texts = {
        "gsm8k": "Natalia sold 48 clips in April and half as many in May.\n"
                 "48 / 2 = 24\n48 + 24 = 72\n#### 72",
        "gsm8k_heading_after": "#### 72\n\n#### Step 3: check\nIt is right.",
        "gsm8k_sentence": "#### The answer is 1,234.50 dollars.",
        "boxed": "So the value is $\\boxed{\\frac{1}{2}}$.",
        "boxed_nested": "\\boxed{\\text{a} + \\dfrac{3}{4}} then \\fbox{-\\frac{4}{2}}",
        "boxed_space": "Final: \\boxed 5",
        "boxed_unterminated": "\\boxed{12} and later \\boxed{\\frac{1}{",
        "answer_line": "Let me think.\n**Final Answer:** 42.\n",
        "answer_line_next": "The answer is:\n\n  $18$ cm\n",
        "answer_line_boxed": "The final answer is $\\boxed{18}$. I hope it is correct.",
        "answer_line_sentence": "Answer: 42. Let me check: 6*7=42",
        "mc_answer_line": "Considering each option...\nAnswer: (B)",
        "mc_end": "Option a is wrong, so the correct one is **c**.",
        "mc_boxed": "\\boxed{D}",
        "numbers": "x = 5, then 1{,}234 and 1\\,234.0 and \u22127 and \u20ac12 and "
                   "2 1/2 and 3 / 4 and 18cm and 90^\\circ and 45\\% and .5",
        "not_numbers": "1e5 12,34 3x 2\\pi H2O step2 1/0",
        "decorations": "  **`$$\\(\\text{\\textbf{Paris}}\\)$$`**..  ",
        "invalid_utf8": b"#### \xff\xfe 7\n\\boxed{\xc3}",
    }
    return {f"seed_{name}": text.encode() if isinstance(text, str) else text
            for name, text in texts.items()}


# --- API requests: wire format and JSON ------------------------------------

def load_messages():
    import grpc_tools
    from grpc_tools import protoc
    out = tempfile.mkdtemp(prefix="conclave_fuzz_stubs_")
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(["grpc_tools.protoc", f"-I{REPO / 'proto'}", f"-I{well_known}",
                      f"--python_out={out}", "conclave/v1/conclave.proto"])
    if rc != 0:
        sys.exit("make_corpus.py: protoc failed on proto/conclave/v1/conclave.proto")
    sys.path.insert(0, out)
    return importlib.import_module("conclave.v1.conclave_pb2")


def request_seeds(pb):
    from google.protobuf import json_format

    user = {"role": "ROLE_USER", "content": "What is 2+2?"}
    generate = {
        "instant": {"messages": [user]},
        "instant_all_sampling": {
            "model": "SmolLM2-135M-Instruct", "mode": "MODE_INSTANT",
            "messages": [{"role": "ROLE_SYSTEM", "content": "Be brief."}, user,
                         {"role_name": "assistant", "content": "4"},
                         {"role_name": "model", "content": "x"}],
            "sampling": {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
                         "seed": "12345", "presence_penalty": 0.5, "frequency_penalty": -0.5,
                         "repetition_penalty": 1.1, "logprobs": 5},
            "max_tokens": 64, "stop": ["\n\n", "User:"]},
        "raw_prompt": {"prompt": "Once upon a time", "max_tokens": 1},
        "thinking": {"mode": "MODE_THINKING", "messages": [user], "max_tokens": 300,
                     "thinking_budget": 200},
        "thinking_no_max_tokens": {"mode": "MODE_THINKING", "messages": [user],
                                   "thinking_budget": 1},
        "contemplating_refused": {"mode": "MODE_CONTEMPLATING", "messages": [user]},
        "bad_role": {"messages": [{"role_name": "robot", "content": "hi"}]},
        "greedy": {"messages": [user], "sampling": {"temperature": 0}},
    }
    contemplate = {
        "defaults": {"messages": [user]},
        "everything": {
            "model": "SmolLM2-135M-Instruct", "messages": [user], "agents": 8,
            "aggregator": "AGGREGATOR_CONFIDENCE", "answer_format": "ANSWER_FORMAT_GSM8K",
            "temperature": 0.6, "temperature_spread": 0.4, "seed": "7",
            "roles": ["step_by_step", "work_backwards", "You are a careful mathematician."],
            "thinking_budget": 100, "max_tokens": 200, "stream_agent_text": True,
            "stopping": {"consensus": {"enabled": True, "min_finished": 3, "vote_share": 0.6},
                         "confidence": {"enabled": True, "warmup_agents": 2,
                                        "keep_top_percent": 50, "window": 32}},
            "confidence_eta": 10},
        "thinking_budget_only": {"messages": [user], "thinking_budget": 2000},
        "one_agent": {"messages": [user], "agents": 1, "temperature": 0,
                      "temperature_spread": 2, "aggregator": "AGGREGATOR_VERIFIER",
                      "answer_format": "ANSWER_FORMAT_MULTIPLE_CHOICE"},
        "confidence_defaults": {"messages": [user], "agents": 2,
                                "stopping": {"confidence": {"enabled": True}}},
        "consensus_defaults": {"messages": [user],
                               "stopping": {"consensus": {"enabled": True}}},
        "synthesis": {"messages": [user], "aggregator": "AGGREGATOR_SYNTHESIS",
                      "answer_format": "ANSWER_FORMAT_BOXED", "max_tokens": 2},
    }
    seeds = {"contemplate_request_fuzz": {
        # POST /v1/contemplations: the JSON mapping plus "stream" and plain roles.
        "seed_http_body.json": json.dumps({
            "messages": [{"role": "user", "content": "What is 6 * 7?"}], "agents": 2,
            "answer_format": "ANSWER_FORMAT_NUMBER", "stream": True}).encode(),
    }}
    for target, message, requests in [("generate_request_fuzz", pb.GenerateRequest, generate),
                                      ("contemplate_request_fuzz", pb.ContemplateRequest,
                                       contemplate)]:
        out = seeds.setdefault(target, {})
        for name, fields in requests.items():
            request = json_format.ParseDict(fields, message())
            out[f"seed_{name}.pb"] = request.SerializeToString(deterministic=True)
            out[f"seed_{name}.json"] = json.dumps(fields, sort_keys=True).encode()
    return seeds


# --- HTTP: POST /v1/chat/completions bodies --------------------------------

def chat_seeds():
    user = {"role": "user", "content": "What is 2+2?"}
    bodies = {
        "minimal": {"messages": [user]},
        "everything": {
            "model": "SmolLM2-135M-Instruct",
            "messages": [{"role": "developer", "content": "Be brief."},
                         {"role": "user", "content": [{"type": "text", "text": "What is"},
                                                      {"type": "text", "text": "2+2?"}],
                          "name": "ann"},
                         {"role": "assistant", "content": None, "refusal": None},
                         user],
            "temperature": 0.7, "top_p": 0.9, "max_completion_tokens": 64, "n": 2,
            "stop": ["\n\n", "User:"], "seed": 12345, "logprobs": True, "top_logprobs": 3,
            "presence_penalty": 0.5, "frequency_penalty": -0.5, "stream": True,
            "stream_options": {"include_usage": True}, "user": "u1", "metadata": {"k": "v"},
            "tool_choice": "none", "response_format": {"type": "text"},
            "modalities": ["text"]},
        "max_tokens_stop_string": {"messages": [user], "max_tokens": 1, "stop": "\n"},
        "unsupported_tools": {"messages": [user], "tools": [{"type": "function"}]},
        "json_object": {"messages": [user], "response_format": {"type": "json_object"}},
        "unknown_field": {"messages": [user], "frobnicate": 1},
        "other_model": {"model": "gpt-4o", "messages": [user]},
        "tool_role": {"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
        "image_part": {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x"}}]}]},
        "wrong_types": {"messages": [user], "temperature": "hot", "n": 1.5, "stop": [1]},
        "huge_numbers": {"messages": [user], "max_tokens": 1e300, "seed": -1,
                         "top_logprobs": 2**63, "temperature": -0.0},
    }
    seeds = {f"seed_{name}.json": json.dumps(body).encode() for name, body in bodies.items()}
    seeds["seed_deep_nesting.json"] = b'{"messages": [' * 40 + b"]}" * 40
    seeds["seed_not_utf8.json"] = b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}'
    seeds["seed_not_an_object.json"] = b'[{"role": "user"}]'
    return seeds


def write(target, files):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        assert len(data) < 64 * 1024, f"{target}/{name} is {len(data)} bytes"
        (folder / name).write_bytes(data)
    print(f"{folder.relative_to(REPO)}: {len(files)} seeds")


def main():
    write("gguf_reader_fuzz", gguf_seeds())
    write("tokenizer_fuzz", tokenizer_seeds())
    write("answer_extraction_fuzz", answer_seeds())
    write("chat_request_fuzz", chat_seeds())
    for target, files in request_seeds(load_messages()).items():
        write(target, files)


if __name__ == "__main__":
    main()

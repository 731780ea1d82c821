#!/usr/bin/env python3
"""Dumps llama.cpp's intermediate tensors for one forward pass, for parity
debugging (which op first differs from conclave?).

Registers a ggml eval callback through llama-cpp-python, evaluates the
given token ids (optionally after a prefix decoded one token at a time) and
writes every f32 tensor whose name matches --names (a regex over ggml names
such as 'attn_norm-3', 'Qcur-3', 'kq-3', 'kq_soft_max-3', 'kqv_out-3',
'ffn_out-3', 'l_out-3') to an .npz file, with its ggml shape (ne) in
'<name>.ne'. A name ggml gives several tensors keeps the last one.

  .venv/bin/python tests/parity/tools/dump_llama_tensors.py \\
      --model models/SmolLM2-135M-Instruct.Q4_1.gguf --ids 504,3575,282 \\
      --names 'l_out-.*' --out /tmp/llama.npz

Not a test; a tool for the person chasing a parity difference.
"""
import argparse
import ctypes
import os
import re

import llama_cpp
import numpy as np


class _TensorHead(ctypes.Structure):
    # The leading fields of struct ggml_tensor (ggml.h): type, buffer, ne, nb.
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
                ("ne", ctypes.c_int64 * 4), ("nb", ctypes.c_size_t * 4)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--decode-from", type=int, default=-1,
                    help="feed ids[k:] one token per step (default: one batch)")
    ap.add_argument("--names", default="l_out-.*")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
    lib.ggml_get_name.restype = ctypes.c_char_p
    lib.ggml_get_name.argtypes = [ctypes.c_void_p]
    lib.ggml_nbytes.restype = ctypes.c_size_t
    lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                            ctypes.c_size_t, ctypes.c_size_t]
    pattern = re.compile(args.names)
    record = [False]
    dumps = {}

    @llama_cpp.ggml_backend_sched_eval_callback
    def callback(tensor, ask, _user_data):
        name = lib.ggml_get_name(tensor).decode()
        if ask:
            return record[0] and pattern.fullmatch(name) is not None
        head = ctypes.cast(tensor, ctypes.POINTER(_TensorHead)).contents
        if head.type == 0:  # f32 only
            n = lib.ggml_nbytes(tensor)
            buf = (ctypes.c_char * n)()
            lib.ggml_backend_tensor_get(tensor, buf, 0, n)
            dumps[name] = np.frombuffer(bytes(buf), dtype=np.float32).copy()
            dumps[name + ".ne"] = np.array(list(head.ne), dtype=np.int64)
        return True

    llm = llama_cpp.Llama(model_path=args.model, n_ctx=1024, n_threads=args.threads,
                          n_threads_batch=args.threads, flash_attn=False,
                          logits_all=True, verbose=False)
    params = llm.context_params
    params.cb_eval = callback
    llm._ctx = llama_cpp._internals.LlamaContext(model=llm._model, params=params, verbose=False)
    ids = [int(t) for t in args.ids.split(",")]
    if args.decode_from < 0:
        record[0] = True
        llm.eval(ids)
    else:
        llm.eval(ids[:args.decode_from])
        for i, tok in enumerate(ids[args.decode_from:]):
            record[0] = i == len(ids) - args.decode_from - 1  # the last step only
            llm.eval([tok])
    np.savez(args.out, **dumps)
    print(f"wrote {len([k for k in dumps if not k.endswith('.ne')])} tensors to {args.out}")


if __name__ == "__main__":
    main()

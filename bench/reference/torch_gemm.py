"""The BLAS that transformers' PyTorch runs its linear layers on (oneDNN / MKL on x86), on GPT-2
small's shapes and the row counts of bench/src/kernels.rs, with the same thread count and the same
trick of cycling through enough weight copies to miss the last-level cache. Writes one JSON
document to stdout."""

import argparse
import json
import time

import torch

SHAPES = [("attn.c_attn", 768, 2304), ("attn.c_proj", 768, 768), ("mlp.c_fc", 768, 3072),
          ("mlp.c_proj", 3072, 768), ("lm_head", 768, 50257)]


def rate(flops, seconds, call):
    call(0)
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or calls < 3:
        calls += 1
        call(calls)
    return flops * calls / (time.perf_counter() - start) / 1e9


@torch.inference_mode()
def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", default="1,4,16,32,64,256,512")
    p.add_argument("--bytes", type=int, default=256 << 20)
    p.add_argument("--seconds", type=float, default=0.5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for name, k, n in SHAPES:
        copies = max(1, args.bytes // (k * n * 4))
        # nn.Linear's layout, [out, in], as transformers' Conv1D-free models and F.linear use.
        weights = [torch.randn(n, k) for _ in range(copies)]
        for rows in [int(r) for r in args.rows.split(",")]:
            x = torch.randn(rows, k)
            flops = 2.0 * rows * k * n
            gflops = rate(flops, args.seconds, lambda i: torch.nn.functional.linear(x, weights[i % copies]))
            results.append({"matrix": name, "k": k, "n": n, "rows": rows, "torch_gflops": gflops})
            print(f"torch {name} [{k}, {n}] x {rows} rows: {gflops:.1f} GFLOP/s", file=__import__("sys").stderr)
    print(json.dumps({"system": "torch " + torch.__version__, "threads": args.threads,
                      "blas": torch.__config__.show().splitlines()[:12], "results": results}, indent=2))


if __name__ == "__main__":
    main()

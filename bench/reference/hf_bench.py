"""Hugging Face transformers (PyTorch eager, f32) on the same checkpoint and thread count as
oneword: greedy generation of `new` tokens after a `prompt`-token prompt for `c` sequences at
once, per-step latency from a manual decode loop, and prefill times. Writes one JSON document
(the schema of bench/report.py) to stdout."""

import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import GPT2LMHeadModel


def percentile(values, q):
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(q * len(values) + 0.999999) - 1))]


def prompt_ids(batch, length):
    # The same prompt as oneword's harness: "the the the ..." (ids 1169, then 262).
    ids = [1169] + [262] * (length - 1)
    return torch.tensor([ids] * batch)


@torch.inference_mode()
def generation(model, c, prompt, new):
    ids = prompt_ids(c, prompt)
    mask = torch.ones_like(ids)
    # Time to first token: a generate of one token; then the full run.
    start = time.perf_counter()
    model.generate(ids, attention_mask=mask, max_new_tokens=1, min_new_tokens=1, do_sample=False, pad_token_id=0)
    ttft = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
    wall = time.perf_counter() - start
    # Inter-token latency: the decode steps alone, with the KV cache.
    out = model(ids, use_cache=True)
    past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    steps = []
    for _ in range(min(new, 64) - 1):
        start = time.perf_counter()
        out = model(token, past_key_values=past, use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        steps.append((time.perf_counter() - start) * 1e3)
    return {
        "concurrency": c,
        "prompt_tokens": prompt,
        "new_tokens": new,
        "tokens_per_s": c * new / wall,
        "decode_tokens_per_s": c * 1e3 / statistics.median(steps),
        "ttft_ms_p50": ttft,
        "ttft_ms_p99": ttft,
        "itl_ms_p50": statistics.median(steps),
        "itl_ms_p99": percentile(steps, 0.99),
    }


@torch.inference_mode()
def prefill_ms(model, n):
    ids = prompt_ids(1, n)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model(ids, use_cache=True)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--concurrency", default="1,4,16,32")
    p.add_argument("--prefill", default="128,512,1024")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = GPT2LMHeadModel.from_pretrained(args.model, attn_implementation="eager", torch_dtype=torch.float32).eval()
    generation(model, 1, 8, 4)  # warm-up
    runs = []
    for c in map(int, args.concurrency.split(",")):
        runs.append(generation(model, c, args.prompt_tokens, args.new_tokens))
        print(json.dumps(runs[-1]), file=__import__("sys").stderr)
    prefill = [{"prompt_tokens": n, "ms": prefill_ms(model, n)} for n in map(int, args.prefill.split(","))]
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        "system": "transformers",
        "version": f"transformers {transformers.__version__}, torch {torch.__version__}",
        "threads": args.threads,
        "weight_bytes": params * 4,
        "generation": runs,
        "prefill": prefill,
        "notes": ["PyTorch eager attention, f32; tokens/s from generate() with min_new_tokens = max_new_tokens; "
                  "TTFT = a generate() of one token; ITL = median and p99 of the first 63 decode steps of a manual loop"],
    }, indent=2))


if __name__ == "__main__":
    main()

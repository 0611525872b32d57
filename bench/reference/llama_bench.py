"""llama.cpp on the same checkpoint and thread count as oneword: converts the Hugging Face
directory to GGUF (once, cached), then runs llama-batched-bench (`prompt` tokens, `new` tokens,
for each number of parallel sequences) and llama-bench (prefill). Writes one JSON document (the
schema of bench/report.py) to stdout."""

import argparse
import json
import os
import shutil
import subprocess
import sys


def converted(args):
    """The checkpoint as GGUF. The converter rejects GPT-2's `attn.bias` buffers (the causal
    mask, which the hub's gpt2 also carries), so they are dropped from a copy first."""
    out = os.path.join(args.work, f"model-{args.dtype}.gguf")
    if os.path.exists(out):
        return out
    from safetensors.numpy import load_file, save_file

    plain = os.path.join(args.work, "model-without-buffers")
    os.makedirs(plain, exist_ok=True)
    tensors = load_file(os.path.join(args.model, "model.safetensors"))
    tensors = {k: v for k, v in tensors.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    save_file(tensors, os.path.join(plain, "model.safetensors"), metadata={"format": "pt"})
    for name in os.listdir(args.model):
        if name != "model.safetensors":
            shutil.copy(os.path.join(args.model, name), plain)
    env = dict(os.environ, PYTHONPATH=os.path.join(args.llama_src, "gguf-py"))
    subprocess.run([sys.executable, os.path.join(args.llama_src, "convert_hf_to_gguf.py"), plain,
                    "--outtype", args.dtype, "--outfile", out], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="the Hugging Face checkpoint directory")
    p.add_argument("--llama-src", required=True, help="llama.cpp's source (for the converter)")
    p.add_argument("--llama-bin", required=True, help="where llama-batched-bench and llama-bench are")
    p.add_argument("--work", required=True, help="where to cache the GGUF file")
    p.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16", "q8_0"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--concurrency", default="1,4,16,32")
    p.add_argument("--prefill", default="128,512,1024")
    args = p.parse_args()
    gguf = converted(args)
    levels = [int(c) for c in args.concurrency.split(",")]
    context = max(levels) * (args.prompt_tokens + args.new_tokens)
    batched = subprocess.run(
        [os.path.join(args.llama_bin, "llama-batched-bench"), "-m", gguf, "-c", str(context),
         "-b", "2048", "-ub", "512", "-npp", str(args.prompt_tokens), "-ntg", str(args.new_tokens),
         "-npl", args.concurrency, "-t", str(args.threads), "-tb", str(args.threads),
         "--output-format", "jsonl"],
        check=True, capture_output=True, text=True).stdout
    runs = []
    for line in batched.splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        runs.append({
            "concurrency": r["pl"],
            "prompt_tokens": r["pp"],
            "new_tokens": r["tg"],
            "tokens_per_s": r["pl"] * r["tg"] / r["t"],
            "decode_tokens_per_s": r["speed_tg"],
            "ttft_ms_p50": r["t_pp"] * 1e3,
            "ttft_ms_p99": r["t_pp"] * 1e3,
            "itl_ms_p50": r["t_tg"] / r["tg"] * 1e3,
            "itl_ms_p99": None,
        })
    bench = subprocess.run(
        [os.path.join(args.llama_bin, "llama-bench"), "-m", gguf, "-p", args.prefill, "-n", "0",
         "-t", str(args.threads), "-o", "json"],
        check=True, capture_output=True, text=True).stdout
    prefill = [{"prompt_tokens": r["n_prompt"], "ms": r["n_prompt"] / r["avg_ts"] * 1e3}
               for r in json.loads(bench) if r["n_prompt"] > 0]
    version = subprocess.run([os.path.join(args.llama_bin, "llama-bench"), "--version"],
                             capture_output=True, text=True)
    print(json.dumps({
        "system": f"llama.cpp {args.dtype}",
        "version": (version.stdout + version.stderr).strip().splitlines()[0] if (version.stdout + version.stderr).strip() else "",
        "threads": args.threads,
        "weight_bytes": os.path.getsize(gguf),
        "generation": runs,
        "prefill": prefill,
        "notes": ["llama-batched-bench: all prompts prefilled in one batch, then the sequences decode "
                  "together; TTFT = the prompt phase; ITL = the mean decode step (no p99 reported)",
                  "llama-bench -n 0 for prefill"],
    }, indent=2))


if __name__ == "__main__":
    main()

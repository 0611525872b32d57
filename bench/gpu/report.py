"""The speed part of the GPU check's report: `oneword-model speed` JSON files (speed-<dtype>.json
in the directory given) as Markdown tables, and, on a GPU, the goals for an H200 met or not.
Usage: report.py DIR [DEVICE]; DEVICE `cpu` (a rehearsal of the check) leaves the goals out."""

import json
import os
import sys

# The goals of the CUDA decoder on one H200, GPT-2 small.
ONE_STREAM_MS = 0.5
TOKENS_PER_S_AT_256 = 50_000


def main():
    out = sys.argv[1]
    device = sys.argv[2] if len(sys.argv) > 2 else "cuda"
    runs = []
    for name in sorted(os.listdir(out)):
        if name.startswith("speed-") and name.endswith(".json"):
            try:
                with open(os.path.join(out, name)) as f:
                    runs.append(json.load(f))
            except (OSError, ValueError):
                print(f"\n{name}: no result (see its log)")
    if not runs:
        return
    first = runs[0]
    print(f"\n## Decode: {first['layers']} layers, width {first['width']}, prompts of "
          f"{first['prompt_tokens']} tokens, {first['new_tokens']} steps timed\n")
    print("| dtype | streams | ms per step p50 | p99 | tokens/s | candle ops per pass |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        for d in r["decode"]:
            print(f"| {r['dtype']} | {d['streams']} | {d['ms_per_step_p50']:.3f} | "
                  f"{d['ms_per_step_p99']:.3f} | {d['tokens_per_s']:,.0f} | {d['ops_per_pass']} |")
    print("\n## Prefill (one sequence, one pass, fastest of three)\n")
    print("| dtype | prompt tokens | ms |")
    print("|---|---|---|")
    for r in runs:
        for p in r["prefill"]:
            print(f"| {r['dtype']} | {p['prompt_tokens']} | {p['ms']:.2f} |")
    if device == "cpu":
        return
    print("\n## Goals (one H200)\n")
    one = min((d["ms_per_step_p50"], r["dtype"]) for r in runs for d in r["decode"]
              if d["streams"] == 1)
    many = max(((d["tokens_per_s"], r["dtype"]) for r in runs for d in r["decode"]
                if d["streams"] == 256), default=None)
    verdict = lambda ok: "met" if ok else "**not met**"
    print(f"- one stream <= {ONE_STREAM_MS} ms per token: {one[0]:.3f} ms ({one[1]}), "
          f"{verdict(one[0] <= ONE_STREAM_MS)}")
    if many:
        print(f"- >= {TOKENS_PER_S_AT_256:,} tokens/s at 256 streams: {many[0]:,.0f} ({many[1]}), "
              f"{verdict(many[0] >= TOKENS_PER_S_AT_256)}")


if __name__ == "__main__":
    main()

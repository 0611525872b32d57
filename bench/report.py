"""Turns the JSON results of one `make bench` run (a directory holding machine.json and one file
per system) into report.md beside them: the machine, then generation and prefill tables with
oneword's ratios to each reference system and each result as a fraction of the memory-bandwidth
floor (the time to read every weight once per decode step)."""

import json
import os
import sys


def load(directory):
    machine, systems, isolation, kernels = {}, [], None, {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(directory, name)) as f:
            doc = json.load(f)
        if name == "machine.json":
            machine = doc
        elif name == "isolation.json":
            isolation = doc
        elif name.startswith("kernels"):
            kernels[name] = doc
        else:
            systems.append(doc)
    # oneword first, then its decoder alone, then the references.
    systems.sort(key=lambda s: (not s["system"].startswith("oneword"), s["system"] != "oneword", s["system"]))
    return machine, systems, isolation, kernels


def kernel_table(kernels):
    """Linear-layer GFLOP/s: ours (packed), candle's gemm and PyTorch's BLAS, per shape and rows."""
    ours, torch = kernels.get("kernels.json"), kernels.get("kernels-torch.json")
    if not ours:
        return []
    theirs = {(r["matrix"], r["rows"]): r["torch_gflops"] for r in (torch or {}).get("results", [])}
    peak = ours["peak_gflops_one_thread"] * ours["threads"]
    rows = []
    for r in ours["results"]:
        t = theirs.get((r["matrix"], r["rows"]))
        rows.append([f"{r['matrix']} [{r['k']}, {r['n']}]", str(r["rows"]), fmt(r["packed_gflops"]),
                     f"{r['packed_gflops'] / peak:.0%}", fmt(r.get("bf16_gflops")), fmt(r.get("q8_0_gflops")), fmt(r["gemm_gflops"]), fmt(t),
                     f"{r['packed_gflops'] / t:.2f}×" if t else "–"])
    return ["## Linear layers, GFLOP/s", "",
            f"oneword's packed product (panel width {ours['panel_width']}), candle's gemm (what the "
            f"CPU path used before) and {torch['system'] if torch else 'PyTorch'}'s `F.linear` on the "
            f"same shapes, {ours['threads']} threads, weights cycled past the last-level cache. Peak: "
            f"{peak:.0f} GFLOP/s ({ours['peak_gflops_one_thread']:.1f} measured on one thread × "
            f"{ours['threads']}).", "",
            table(["matrix", "rows", "oneword f32", "of peak", "oneword bf16", "oneword q8_0", "candle/gemm", "torch",
                   "oneword f32 / torch"], rows), ""]


def fmt(value, digits=1):
    return "–" if value is None else f"{value:,.{digits}f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main():
    directory = sys.argv[1]
    machine, systems, isolation, kernels = load(directory)
    ours = systems[0]
    references = [s for s in systems if not s["system"].startswith("oneword")]
    bandwidth = machine.get("bandwidth_gb_s")
    out = ["# Benchmark", ""]
    out += [f"- {k}: {v}" for k, v in machine.items()]
    out += [f"- {s['system']}: {s.get('version', '')}; {s['threads']} threads" for s in systems]
    out.append("")
    levels = sorted({r["concurrency"] for s in systems for r in s["generation"]})
    by = {s["system"]: {r["concurrency"]: r for r in s["generation"]} for s in systems}

    for metric, title, digits in [
        ("decode_tokens_per_s", "Decode throughput, tokens/s (every stream decoding: after the last prompt is in, before the first stream ends)", 1),
        ("decode_to_end_tokens_per_s", "Decode throughput to the end, tokens/s (after the last prompt is in, until the last stream ends)", 1),
        ("tokens_per_s", "End-to-end throughput, tokens/s (prompt processing included)", 1),
        ("ttft_ms_p50", "Time to first token, ms (p50)", 0),
        ("itl_ms_p50", "Inter-token latency, ms (p50)", 1),
        ("itl_ms_p99", "Inter-token latency, ms (p99)", 1),
    ]:
        header = ["streams"] + [s["system"] for s in systems]
        higher_is_better = metric.endswith("per_s")
        header += [f"{ours['system']} / {r['system']}" for r in references] if higher_is_better else []
        rows = []
        for c in levels:
            values = [by[s["system"]].get(c, {}).get(metric) for s in systems]
            row = [str(c)] + [fmt(v, digits) for v in values]
            if higher_is_better:
                mine = by[ours["system"]].get(c, {}).get(metric)
                for r in references:
                    theirs = by[r["system"]].get(c, {}).get(metric)
                    row.append(f"{mine / theirs:.2f}×" if mine and theirs else "–")
            rows.append(row)
        out += [f"## {title}", "", table(header, rows), ""]

    pairs = [(s, by.get(f"llama.cpp {s['system'].split()[1]}")) for s in systems
             if s["system"].startswith("oneword ") and s["system"].split()[1] in {"f16", "bf16", "q8_0"}]
    pairs = [(s, r) for s, r in pairs if r is not None]
    if pairs:
        header = ["streams"] + [f"{s['system']} / llama.cpp {s['system'].split()[1]}" for s, _ in pairs]
        rows = []
        for c in levels:
            row = [str(c)]
            for s, theirs in pairs:
                mine = by[s["system"]].get(c, {}).get("decode_tokens_per_s")
                other = theirs.get(c, {}).get("decode_tokens_per_s")
                row.append(f"{mine / other:.2f}×" if mine and other else "–")
            rows.append(row)
        out += ["## Decode throughput at the same weight precision", "", table(header, rows), ""]

    if bandwidth:
        out += ["## Fraction of the bandwidth floor",
                "",
                f"Reading every weight once per decode step at {bandwidth:.1f} GB/s is the floor; "
                "the fraction is floor / measured step time (1.0 = at the floor).", ""]
        header = ["streams"] + [s["system"] for s in systems]
        rows = []
        for c in levels:
            row = [str(c)]
            for s in systems:
                r = by[s["system"]].get(c, {})
                speed = r.get("decode_tokens_per_s")
                if speed and s.get("weight_bytes"):
                    floor = s["weight_bytes"] / (bandwidth * 1e9)
                    row.append(f"{floor / (c / speed):.2f}")
                else:
                    row.append("–")
            rows.append(row)
        out += [table(header, rows), ""]

    lengths = sorted({p["prompt_tokens"] for s in systems for p in s.get("prefill", [])})
    if lengths:
        prefill = {s["system"]: {p["prompt_tokens"]: p["ms"] for p in s.get("prefill", [])} for s in systems}
        with_prefill = [s for s in systems if prefill[s["system"]]]
        header = ["prompt tokens"] + [s["system"] for s in with_prefill]
        rows = [[str(n)] + [fmt(prefill[s["system"]].get(n), 0) for s in with_prefill] for n in lengths]
        out += ["## Prefill time, ms (one prompt)", "", table(header, rows), ""]

    if isolation:
        alone = isolation["alone"]
        rows = [["alone", "–", fmt(alone["itl_ms_p50"]), fmt(alone["itl_ms_p99"]), "1.00×"]]
        for key, label in [("paced", "beside a paced n-gram stream"), ("flat_out", "beside n-gram generations flat out")]:
            side = isolation[key]
            rows.append([label, fmt(side["ngram_tokens_per_s"], 0), fmt(side["run"]["itl_ms_p50"]),
                         fmt(side["run"]["itl_ms_p99"]), f"{side['run']['itl_ms_p50'] / alone['itl_ms_p50']:.2f}×"])
        out += ["## The transformer beside the n-gram baseline", "",
                f"{isolation['streams']} transformer streams through the gateway, alone, beside a "
                f"`{isolation['ngram_model']}` stream whose client reads at a reader's pace, and beside "
                "`" + isolation["ngram_model"] + "` generations back to back. The baseline is its own "
                "service, but here every service shares this machine's cores, so the last row "
                "measures CPU taken more than interference.", "",
                table(["", "n-gram tokens/s", "ITL p50, ms", "ITL p99, ms", "p50 / alone"], rows), ""]

    out += kernel_table(kernels)
    out += ["## Notes", ""] + [f"- {s['system']}: {n}" for s in systems for n in s.get("notes", [])]
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    print(os.path.join(directory, "report.md"))


if __name__ == "__main__":
    main()

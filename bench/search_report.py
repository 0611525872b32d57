"""Turns one search-benchmark run (a directory with machine.json, datasets.json,
oneword-<phase>.json and reference-<phase>.json) into report.md beside them: per item, what was
measured, the goal (shared/reference/similarity-search.md §8), whether it is met, the reference
measured in the same run and oneword's ratio to it."""

import json
import math
import os
import sys


def load(directory, name):
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def fmt(value, digits=1):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def ratio(mine, theirs):
    return f"{mine / theirs:.2f}×" if mine and theirs else "–"


def met(ok):
    return "–" if ok is None else ("**yes**" if ok else "**no**")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def qps_at(sweep, target):
    """QPS at recall `target`, interpolated (log QPS linear in recall) between the two sweep
    points around it; None when no point reaches it; the first point's QPS, marked as a lower
    bound, when even the smallest ef is above it."""
    points = sorted((p["recall"], p["qps"]) for p in sweep)
    if not points or points[-1][0] < target:
        return None, "not reached"
    if points[0][0] >= target:
        best = max(q for r, q in points if r >= target)
        return best, "≥ (every ef reaches it)"
    for (r1, q1), (r2, q2) in zip(points, points[1:]):
        if r1 <= target <= r2:
            if r2 == r1:
                return max(q1, q2), ""
            t = (target - r1) / (r2 - r1)
            return math.exp(math.log(q1) + t * (math.log(q2) - math.log(q1))), ""
    return None, "not reached"


def main():
    d = sys.argv[1]
    machine = load(d, "machine.json") or {}
    datasets = load(d, "datasets.json") or {}
    out = ["# Similarity search benchmark", ""]
    out += [f"- CPU: {machine.get('cpu', '?')}, {machine.get('cpu_threads', '?')} threads "
            f"({', '.join(machine.get('simd', []))}); {fmt(machine.get('memory_gib'))} GiB",
            f"- oneword built for: {machine.get('rust_target_features', '?')}",
            "- goals: shared/reference/similarity-search.md §8; each reference ran in the same session, "
            "right after oneword's run of the same phase, on the same data and threads.", ""]
    loads = []

    # 1. Embedding
    ours, ref = load(d, "oneword-embed.json"), load(d, "reference-embed.json")
    if ours:
        loads.append(("embed", ours))
        out += ["## 1. Embedding throughput (all-MiniLM-L6-v2, sentences/s)", "",
                f"oneword: `SentenceEncoder` in-process, {ours['threads']} threads; reference: "
                f"{ref['version'] if ref else '–'}, {ref['threads'] if ref else '–'} threads "
                "(torch.set_num_threads). Tokenization is included on both sides.", ""]
        rows = []
        for name, label in [("short", "short sentences (≤ 16 tokens)"), ("verses", "corpus lines (long)")]:
            o = ours["runs"].get(name)
            r = ref["runs"].get(name) if ref else None
            if not o:
                continue
            for mode, mode_label in [("per_call_32", "calls of 32"), ("one_call", "one call, batches of 32")]:
                mine = o[mode]["sentences_per_s"]
                theirs = r[mode]["sentences_per_s"] if r else None
                goal = "≥ 1.0× reference" if name == "short" and mode == "per_call_32" else "–"
                ok = (mine >= theirs) if theirs and goal != "–" else None
                rows.append([f"{label}, {o['sentences']} texts, {o['tokens']:,} tokens, {mode_label}",
                             fmt(mine, 0), goal, met(ok), fmt(theirs, 0), ratio(mine, theirs)])
        out += table(["run", "oneword", "goal", "met?", "sentence-transformers", "ratio"], rows)
        parity = ours["runs"].get("verses", {}).get("parity")
        if parity:
            out += [f"Parity on {parity['rows']} corpus lines: min cosine {parity['min_cosine']:.6f}, "
                    f"max |Δ| {parity['max_abs_diff']:.2e} (goal: cosine ≥ 0.9999, |Δ| ≤ 1e-4: "
                    f"{met(parity['min_cosine'] >= 0.9999 and parity['max_abs_diff'] <= 1e-4)}).", ""]

    # 2. Data sets
    if datasets:
        out += ["## 2. Data sets", "",
                f"Built once into bench/.work/search by `search_ref.py prepare` from the bundled corpus "
                f"({datasets.get('corpus_lines', '?'):,} lines, {datasets.get('corpus_tokens', 0):,} MiniLM tokens) "
                "and the local model; no hub downloads.", ""]
        out += table(["file", "shape", "what"], [[k, "×".join(map(str, v)), datasets.get("describe", {}).get(k, "")]
                                                 for k, v in datasets.get("files", {}).items()])
        big = load(d, "datasets-million.json")
        if big:
            out += [f"The 1M set (`search_ref.py prepare-million`): the whole King James text (Debian's bible-kjv, "
                    f"{big['corpus_lines']:,} lines, {big['corpus_tokens']:,} MiniLM tokens), same model.", ""]
            out += table(["file", "shape", "what"], [[k, "×".join(map(str, v)), big.get("describe", {}).get(k, "")]
                                                     for k, v in big.get("files", {}).items()])

    # 3. Exact
    ours, ref = load(d, "oneword-exact.json"), load(d, "reference-exact.json")
    if ours:
        loads.append(("exact", ours))
        s, b = ours["single"], ours["batch64"]
        rs = ref["single"] if ref else {}
        rb = ref["batch64"] if ref else {}
        rbb = ref.get("batch64_blas", {}) if ref else {}
        out += [f"## 3. Exact search, {ours['points']:,}×{ours['dim']}, top {ours['k']}", "",
                f"oneword: `Exact::nearest` + `rank` over `Rows`; reference: {ref['version'] if ref else '–'} "
                "IndexFlatIP (omp_set_num_threads 1 for single queries, 2 for batches).", ""]
        rows = [
            ["one query, 1 thread: p50 latency, ms", fmt(s["p50_ms"], 2), "≤ 12 ms", met(s["p50_ms"] <= 12),
             fmt(rs.get("p50_ms"), 2), ratio(rs.get("p50_ms"), s["p50_ms"]) + " (speed)"],
            ["one query, 1 thread: p99 latency, ms", fmt(s["p99_ms"], 2), "–", "–", fmt(rs.get("p99_ms"), 2), "–"],
            ["one query, 1 thread: QPS", fmt(s["qps"], 0), "≥ 0.8× FAISS",
             met(s["qps"] >= 0.8 * rs["qps"]) if rs else "–", fmt(rs.get("qps"), 0), ratio(s["qps"], rs.get("qps"))],
            [f"one query, {ours['single_all_threads']['threads']} threads: p50 latency, ms",
             fmt(ours["single_all_threads"]["p50_ms"], 2), "–", "–", "–", "–"],
            [f"batches of 64, {b['threads']} threads: QPS", fmt(b["qps"], 0), "≥ 1,000", met(b["qps"] >= 1000),
             fmt(rb.get("qps"), 0) + (f" (default blas threshold {rb['blas_threshold']:,})" if "blas_threshold" in rb else ""),
             ratio(b["qps"], rb.get("qps"))],
            [f"batches of 64, {b['threads']} threads: QPS, FAISS on its BLAS path", fmt(b["qps"], 0), "≥ 1,000",
             met(b["qps"] >= 1000), fmt(rbb.get("qps"), 0) + " (blas threshold 20)" if rbb else "–",
             ratio(b["qps"], rbb.get("qps"))],
            ["recall@k against brute force (f64)", fmt(s["recall"], 4), "1.0", met(s["recall"] >= 1.0),
             fmt(ref.get("recall_vs_truth") if ref else None, 4), "–"],
            ["recall@k, a hit scoring within 1e-6 of the k-th counted", fmt(s.get("recall_up_to_ties"), 4), "1.0",
             met(s.get("recall_up_to_ties", 0) >= 1.0), "–", "–"],
        ]
        out += table(["measure", "oneword", "goal", "met?", "FAISS", "ratio"], rows)

    # 4. HNSW
    ours_h, ref = load(d, "oneword-hnsw.json"), load(d, "reference-hnsw.json")
    if ours_h:
        loads.append(("hnsw", ours_h))
        h = ours_h["hnsw"]
        out += [f"## 4. HNSW, {h['points']:,}×384, M={h['m']}, ef_construction={h['ef_construction']}, one thread", "",
                "oneword: `Indexes` of an HNSW collection (builds `Hnsw`; searched through the service's planner "
                f"without gRPC); reference: {ref['version'] if ref else '–'} (`ip` space, one thread, one "
                "`knn_query` per query). Recall@10 is against the brute-force truth.", ""]
        out += table(["measure", "oneword", "hnswlib", "ratio"],
                     [["build, s", fmt(h["build_s"]), fmt(ref["build_s"] if ref else None),
                       ratio(ref["build_s"] if ref else None, h["build_s"]) + " (speed)"]])
        theirs = {p["ef"]: p for p in (ref["sweep"] if ref else [])}
        rows = [[p["ef"], fmt(p["recall"], 4), fmt(p["qps"], 0),
                 fmt(theirs.get(p["ef"], {}).get("recall"), 4), fmt(theirs.get(p["ef"], {}).get("qps"), 0)]
                for p in h["sweep"]]
        out += table(["ef_search", "oneword recall@10", "oneword QPS", "hnswlib recall@10", "hnswlib QPS"], rows)
        rows = []
        for target in (0.95, 0.99):
            mine, note = qps_at(h["sweep"], target)
            other, other_note = qps_at(ref["sweep"], target) if ref else (None, "")
            rows.append([f"QPS at recall {target}", (fmt(mine, 0) + " " + note).strip(),
                         "≥ 1,000" if target == 0.95 else "–",
                         met(mine is not None and mine >= 1000) if target == 0.95 else "–",
                         (fmt(other, 0) + " " + other_note).strip(), ratio(mine, other),
                         met(mine is not None and other is not None and mine >= 0.7 * other)])
        out += table(["measure", "oneword", "goal", "met?", "hnswlib", "ratio", "≥ 0.7× hnswlib?"], rows)

    # 5. Filtered
    if ours_h and ours_h.get("filtered"):
        f = ours_h["filtered"]
        out += [f"## 5. Filtered search, {f['points']:,} points, {f['passing']:,} pass ({f['selectivity']:.1%})", "",
                f"`{f['filter']}`, through `Indexes::search` of the HNSW collection above (the planner scans "
                "selective filters exactly). Goals: the exact fallback ≤ 5 ms at 100k, never fewer than k "
                "hits when k exist. pgvector's iterative scan on the same filter: section 7.", ""]
        rows = []
        for r in f["runs"]:
            rows.append([f"k={r['k']}, {r['threads']} thread(s)", fmt(r["p50_ms"], 2), fmt(r["p99_ms"], 2),
                         met(r["p50_ms"] <= 5), f"{r['answers_short_of_k']} of {r['queries']}",
                         met(r["answers_short_of_k"] == 0 and r["hits_failing_the_filter"] == 0),
                         fmt(r["recall"], 4), f"{r['answered_exactly']} of {r['queries']}"])
        out += table(["run", "p50, ms", "p99, ms", "≤ 5 ms?", "answers short of k", "k hits, all passing?",
                      "recall", "answered by the exact scan"], rows)

    # 6. Upserts and restarts
    u = load(d, "oneword-upsert.json")
    if u:
        loads.append(("upsert", u))
        e, re_ = u["upsert_exact"], u["restart_exact"]
        out += ["## 6. Upserts and restarts through the service", "",
                "`oneword_index::run` in this process on 127.0.0.1:0, a temporary `--data-dir` (SQLite, "
                "synchronous=FULL), no embedder; one gRPC client, one request at a time.", ""]
        rows = [[f"upserts into EXACT, batches of {e['batch']}, points/s", fmt(e["points_per_s"], 0), "≥ 5,000",
                 met(e["points_per_s"] >= 5000), f"batch p50 {fmt(e['batch_ms_p50'])} ms, p99 {fmt(e['batch_ms_p99'])} ms"],
                [f"restart, EXACT collection of {re_['points']:,} points, s", fmt(re_["seconds"], 2), "≤ 5 s",
                 met(re_["seconds"] <= 5), f"searched with {re_['searched_with']}"]]
        if u.get("upsert_auto"):
            a, ra = u["upsert_auto"], u["restart_auto"]
            rows += [[f"upserts into AUTO (below its threshold), points/s", fmt(a["points_per_s"], 0), "≥ 5,000",
                      met(a["points_per_s"] >= 5000), "second sample of the same path"],
                     [f"restart, AUTO collection of {ra['points']:,} points (builds its graph), s",
                      fmt(ra["seconds"], 1), "– (reported)", "–", f"searched with {ra['searched_with']}"]]
        else:
            rows.append(["restart, AUTO/HNSW collection", "not measured (BENCH_SEARCH_HNSW_RESTART=false)", "–", "–", ""])
        out += table(["measure", "oneword", "goal", "met?", "notes"], rows)

    # 7. pgvector
    pg = load(d, "oneword-pgvector.json")
    if pg:
        loads.append(("pgvector", pg))
        versions = pg.get("postgres", {})
        p, e = pg["pgvector"], pg["embedded"]
        out += [f"## 7. pgvector beside the embedded index, {p['upserts']['points']:,}×384, HNSW M=16, ef_construction=200", "",
                f"Both through the index service (gRPC on 127.0.0.1, one client, one request at a time): PostgreSQL "
                f"{versions.get('postgresql', '?')} with pgvector {versions.get('pgvector', '?')} (`--postgres`), and the "
                "embedded SQLite + in-memory HNSW. Recall@10 against the brute-force truth (which our exact search "
                "matches, section 3). Goal: pgvector recall@10 ≥ 0.95 at `ef_search` 100, its QPS reported beside ours.", ""]
        theirs = {r["ef"]: r for r in p["sweep"]}
        rows = []
        for r in e["sweep"]:
            t = theirs.get(r["ef"], {})
            tl = t.get("latency", {})
            goal = "≥ 0.95" if r["ef"] == 100 else "–"
            rows.append([r["ef"], fmt(t.get("recall"), 4), goal,
                         met(t.get("recall", 0) >= 0.95) if r["ef"] == 100 else "–",
                         fmt(tl.get("qps"), 0), fmt(tl.get("p50_ms"), 2),
                         fmt(r["recall"], 4), fmt(r["latency"]["qps"], 0), fmt(r["latency"]["p50_ms"], 2),
                         ratio(r["latency"]["qps"], tl.get("qps"))])
        out += table(["ef_search", "pgvector recall@10", "goal", "met?", "pgvector QPS", "pgvector p50, ms",
                      "embedded recall@10", "embedded QPS", "embedded p50, ms", "embedded / pgvector"], rows)
        rows = []
        for name, r in [("pgvector (iterative scan)", p), ("embedded (exact fallback)", e)]:
            f = r["filtered"]
            rows.append([name, fmt(f["p50_ms"], 2), fmt(f["p99_ms"], 2), f"{f['short_of_k']} of {f['queries']}",
                         f["hits_failing_the_filter"]])
        out += ["Filtered, 1% (`bucket == 7`), k=10, `ef_search` 100:", ""]
        out += table(["backend", "p50, ms", "p99, ms", "answers short of k", "hits failing the filter"], rows)
        out += table(["upserts into HNSW, batches of 256", "points/s", "batch p50, ms", "batch p99, ms"],
                     [[name, fmt(r["upserts"]["points_per_s"], 0), fmt(r["upserts"]["batch_ms_p50"]),
                       fmt(r["upserts"]["batch_ms_p99"])] for name, r in [("pgvector (fsync off)", p),
                                                                           ("embedded (synchronous=FULL)", e)]])

    # 8. 1M
    m, ref = load(d, "oneword-million.json"), load(d, "reference-million.json")
    if m:
        loads.append(("million", m))
        rss = m["rss_gib"]
        mine, note = qps_at(m["sweep"], 0.95)
        other, other_note = qps_at(ref["sweep"], 0.95) if ref else (None, "")
        best = max((r["recall"] for r in m["sweep"]), default=0)
        out += [f"## 8. HNSW, {m['points']:,}×{m['dim']}, M={m['m']}, ef_construction={m['ef_construction']}", "",
                f"`Indexes` of an HNSW collection as in section 4, on the 1M set; {m['queries']} held-out queries, "
                f"one thread each; the build on {m['build_threads']} thread(s), as the service builds it. "
                f"Reference: {ref['version'] if ref else '–'}, built on {ref['build_threads'] if ref else '–'} "
                "thread(s). Memory: this process's resident set, reset after the brute-force truth.", ""]
        out += table(["measure", "oneword", "goal", "met?", "hnswlib", "ratio"], [
            ["build, s", fmt(m["build_s"], 0), "≤ 900 s on 2 cores", met(m["build_s"] <= 900),
             fmt(ref["build_s"] if ref else None, 0), ratio(ref["build_s"] if ref else None, m["build_s"]) + " (speed)"],
            ["peak RSS (rows with ids and payloads, graph, queries), GiB", fmt(rss["peak"], 2), "≤ 2.5 GiB",
             met(rss["peak"] <= 2.5), fmt(ref.get("peak_rss_gib") if ref else None, 2) + " (with its numpy input)", "–"],
            ["RSS: rows loaded / graph built / after the searches, GiB",
             f"{fmt(rss['rows_loaded'], 2)} / {fmt(rss['graph_built'], 2)} / {fmt(rss['after_search'], 2)}", "–", "–",
             "–", "–"],
            ["best recall@10 of the sweep", fmt(best, 4), "≥ 0.95", met(best >= 0.95),
             fmt(max((r["recall"] for r in ref["sweep"]), default=None) if ref else None, 4), "–"],
            ["QPS at recall 0.95, one thread", (fmt(mine, 0) + " " + note).strip(), "–", "–",
             (fmt(other, 0) + " " + other_note).strip(), ratio(mine, other)],
        ])
        theirs = {p["ef"]: p for p in (ref["sweep"] if ref else [])}
        out += table(["ef_search", "oneword recall@10", "oneword QPS", "hnswlib recall@10", "hnswlib QPS"],
                     [[r["ef"], fmt(r["recall"], 4), fmt(r["qps"], 0),
                       fmt(theirs.get(r["ef"], {}).get("recall"), 4), fmt(theirs.get(r["ef"], {}).get("qps"), 0)]
                      for r in m["sweep"]])

    out += ["## Conditions", ""]
    out += [f"- load average (1 min) before/after the `{name}` phase: {fmt(doc.get('loadavg_before'), 2)} / "
            f"{fmt(doc.get('loadavg_after'), 2)} on {machine.get('cpu_threads', '?')} threads"
            for name, doc in loads]
    out += ["- the machine is shared: compare systems within one run, not across runs."]
    notes = []
    for name in ["embed", "exact", "hnsw", "upsert", "pgvector", "million"]:
        for who in ["oneword", "reference"]:
            doc = load(d, f"{who}-{name}.json") or {}
            for part in [doc] + [v for v in doc.values() if isinstance(v, dict)]:
                notes += [f"- {part.get('system', who)}: {n}" for n in part.get("notes", [])]
    out += notes + [""]
    with open(os.path.join(d, "report.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    print(os.path.join(d, "report.md"))


if __name__ == "__main__":
    main()

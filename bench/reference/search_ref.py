"""The reference side of the search benchmark (`bench/search.sh`), one phase per call, each
printing one JSON document to stdout:

  prepare  builds the data sets once into --data (raw little-endian f32 files + datasets.json):
           short sentences for the embedding runs, MiniLM sentence vectors of the corpus's lines
           (`verses`) and MiniLM per-token hidden states of the corpus (`tokens`, base and
           held-out queries), all from sentence-transformers on the local model directory;
  prepare-million  the same per-token states over a larger corpus (the whole King James text,
           `fetch-kjv.sh`): 1M base vectors and held-out queries, into their own --data;
  embed    sentence-transformers' `encode` throughput on the short sentences (and on long ones);
  exact    FAISS IndexFlatIP: one query at a time on one thread, and batches of 64 on two;
  hnsw     hnswlib (M, ef_construction as given, --build-threads): build time, then recall@10
           against the exact answer oneword's harness wrote (truth) and single-thread QPS per
           ef_search; with --data naming the 1M set, the reference of the `million` phase.

Nothing here downloads a model or a data set: the model is the directory given."""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np


def log(*what):
    print("reference:", *what, file=sys.stderr, flush=True)


def percentile(values, q):
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(q * len(values) + 0.999999) - 1))]


def load(data, name):
    with open(os.path.join(data, "datasets.json")) as f:
        shape = json.load(f)["files"][name]
    return np.fromfile(os.path.join(data, name), dtype="<f4").reshape(shape)


def normalised(m):
    m = np.asarray(m, dtype=np.float32)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def write_f32(directory, files, name, m):
    """Writes `m` as raw little-endian f32 and records its shape in `files` (datasets.json)."""
    m = np.ascontiguousarray(m, dtype="<f4")
    m.tofile(os.path.join(directory, name))
    files[name] = list(m.shape)


# ---------------------------------------------------------------------------------------------
# prepare


def built(args, wanted):
    """Whether --data already holds the data sets `wanted` describes (datasets.json's params)."""
    path = os.path.join(args.data, "datasets.json")
    if os.path.exists(path):
        with open(path) as f:
            if json.load(f).get("params") == wanted:
                log("data sets already built in", args.data)
                return True
    return False


def model_for(args):
    """The local sentence-transformers model on the CPU, with --threads, and --data created."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    os.makedirs(args.data, exist_ok=True)
    return SentenceTransformer(args.model, device="cpu")


def finish(args, wanted, files, lines, corpus_tokens, started, describe):
    """Writes datasets.json (what was built, from what, and what each file holds), which marks
    --data as built for `wanted`."""
    doc = {
        "params": wanted,
        "files": files,
        "corpus_lines": len(lines),
        "corpus_tokens": corpus_tokens,
        "describe": describe,
    }
    with open(os.path.join(args.data, "datasets.json"), "w") as f:
        json.dump(doc, f, indent=2)
    return {"cached": False, "seconds": time.perf_counter() - started}


def prepare(args):
    wanted = {"tokens": args.tokens, "queries": args.queries, "short": args.short, "version": 1}
    if built(args, wanted):
        return {"cached": True}
    model = model_for(args)
    tok = model.tokenizer
    with open(args.corpus) as f:
        lines = [line.strip() for line in f if line.strip()]
    files, started = {}, time.perf_counter()

    def write(name, m):
        write_f32(args.data, files, name, m)

    # Short sentences: the first words of each line, as many as keep it within 16 tokens with
    # [CLS] and [SEP]; each line gives one, in corpus order.
    short = []
    for line in lines:
        words = line.split()
        n = min(len(words), 14)
        while n > 1 and len(tok(" ".join(words[:n]))["input_ids"]) > 16:
            n -= 1
        short.append(" ".join(words[:n]))
        if len(short) == args.short:
            break
    with open(os.path.join(args.data, "short.txt"), "w") as f:
        f.write("\n".join(short) + "\n")
    log(f"{len(short)} short sentences")

    verses = model.encode(lines, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    write("verses.f32", verses)
    with open(os.path.join(args.data, "verses.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    log(f"verses: {verses.shape} in {time.perf_counter() - started:.0f} s")

    every, base, queries = token_sets(model, lines, args.tokens, args.queries)
    write("tokens.f32", base)
    write("tokens-queries.f32", queries)
    log(f"tokens: {base.shape} base, {queries.shape} queries from {every} corpus tokens "
        f"in {time.perf_counter() - started:.0f} s")

    return finish(args, wanted, files, lines, every, started, {
        "short.txt": "one short sentence per corpus line (its first words, <= 16 MiniLM tokens with [CLS] and [SEP])",
        "verses.f32": "sentence-transformers all-MiniLM-L6-v2 vectors of the corpus's lines (normalised)",
        "tokens.f32": "MiniLM last-layer per-token states of the corpus's first lines ([CLS]/[SEP] included, normalised)",
        "tokens-queries.f32": "per-token states drawn (seed 7) from the lines after the base set's: held out",
    })


def token_sets(model, lines, n_base, n_queries):
    """Per-token hidden states (the model's last layer, [CLS] and [SEP] included, padding not),
    normalised: the base set is the tokens of the first lines (it may end inside a line), the
    queries are drawn (seed 7) from the lines after it. Returns (corpus tokens, base, queries)."""
    import torch

    states = model.encode(lines, batch_size=32, output_value="token_embeddings", convert_to_numpy=False)
    counts = [s.shape[0] for s in states]
    every = normalised(torch.cat(states).numpy())
    del states
    if every.shape[0] < n_base + n_queries:
        raise SystemExit(f"the corpus has {every.shape[0]} tokens, fewer than {n_base} + {n_queries}")
    ends = np.cumsum(counts)
    held_out = every[int(ends[np.searchsorted(ends, n_base)]):]
    rng = np.random.default_rng(7)
    queries = held_out[np.sort(rng.choice(held_out.shape[0], size=n_queries, replace=False))]
    return int(every.shape[0]), every[:n_base], queries


def prepare_million(args):
    wanted = {"tokens": args.tokens, "queries": args.queries, "corpus": os.path.basename(args.corpus), "version": 1}
    if built(args, wanted):
        return {"cached": True}
    model = model_for(args)
    with open(args.corpus) as f:
        lines = [line.strip() for line in f if line.strip()]
    started = time.perf_counter()
    every, base, queries = token_sets(model, lines, args.tokens, args.queries)
    files = {}
    write_f32(args.data, files, "tokens.f32", base)
    write_f32(args.data, files, "tokens-queries.f32", queries)
    log(f"1M set: {base.shape} base, {queries.shape} queries from {every} tokens of {len(lines)} lines "
        f"in {time.perf_counter() - started:.0f} s")
    return finish(args, wanted, files, lines, every, started, {
        "tokens.f32": "MiniLM last-layer per-token states of the whole King James text's first lines (normalised)",
        "tokens-queries.f32": "per-token states drawn (seed 7) from the lines after the base set's: held out",
    })


# ---------------------------------------------------------------------------------------------
# embed


def embed(args):
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model, device="cpu")
    runs = {}
    for name, file, limit in [("short", "short.txt", None), ("verses", "verses.txt", args.long)]:
        with open(os.path.join(args.data, file)) as f:
            texts = [line.rstrip("\n") for line in f if line.strip()][:limit]
        model.encode(texts[:32], batch_size=32)  # warm-up
        calls, whole = [], []
        for _ in range(args.repeat):
            # One encode call per 32 texts, as a client's request of 32 would be.
            start = time.perf_counter()
            for i in range(0, len(texts), 32):
                model.encode(texts[i:i + 32], batch_size=32, normalize_embeddings=True)
            calls.append(len(texts) / (time.perf_counter() - start))
            # The whole list in one call, batched by 32 after sorting by length.
            start = time.perf_counter()
            model.encode(texts, batch_size=32, normalize_embeddings=True)
            whole.append(len(texts) / (time.perf_counter() - start))
        tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
        runs[name] = {
            "sentences": len(texts),
            "tokens": tokens,
            "per_call_32": {"sentences_per_s": statistics.median(calls), "all": calls},
            "one_call": {"sentences_per_s": statistics.median(whole), "all": whole},
        }
        log(f"embed {name}: {statistics.median(calls):.0f} sentences/s (calls of 32), "
            f"{statistics.median(whole):.0f} (one call)")
    return {
        "system": "sentence-transformers",
        "version": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "runs": runs,
    }


# ---------------------------------------------------------------------------------------------
# exact


def exact(args):
    import faiss

    base, queries = load(args.data, "tokens.f32"), load(args.data, "tokens-queries.f32")
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    k = args.k
    single = queries[: args.single_queries]
    faiss.omp_set_num_threads(1)
    index.search(single[:5], k)  # warm-up
    times, found = [], []
    start_all = time.perf_counter()
    for q in single:
        start = time.perf_counter()
        _, ids = index.search(q[None, :], k)
        times.append((time.perf_counter() - start) * 1e3)
        found.append(ids[0])
    wall = time.perf_counter() - start_all
    truth = truth_ids(args.data, k)
    agree = float(np.mean([len(set(f) & set(t[:k])) / k for f, t in zip(found, truth)]))
    faiss.omp_set_num_threads(args.batch_threads)
    batch = queries[: args.batch_queries]

    def batches():
        index.search(batch[:64], k)
        qps = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            for i in range(0, len(batch), 64):
                index.search(batch[i:i + 64], k)
            qps.append(len(batch) / (time.perf_counter() - start))
        return qps

    # FAISS computes a batch's distances with BLAS (one matrix product) only when the batch
    # has at least `distance_compute_blas_threshold` queries; measure its default and the BLAS
    # path (the stronger of the two is the reference).
    default_threshold = faiss.cvar.distance_compute_blas_threshold
    batch_times = batches()
    faiss.cvar.distance_compute_blas_threshold = 20
    blas_times = batches()
    faiss.cvar.distance_compute_blas_threshold = default_threshold
    log(f"faiss flat: p50 {statistics.median(times):.2f} ms, batch-64 {statistics.median(batch_times):.0f} QPS "
        f"(BLAS path: {statistics.median(blas_times):.0f})")
    return {
        "system": "faiss IndexFlatIP",
        "version": f"faiss-cpu {faiss.__version__}",
        "simd": faiss.get_compile_options(),
        "points": int(base.shape[0]),
        "single": {"threads": 1, "queries": len(single), "p50_ms": statistics.median(times),
                   "p99_ms": percentile(times, 0.99), "qps": len(single) / wall},
        "batch64": {"threads": args.batch_threads, "queries": len(batch),
                    "qps": statistics.median(batch_times), "all": batch_times,
                    "blas_threshold": default_threshold},
        "batch64_blas": {"threads": args.batch_threads, "queries": len(batch),
                         "qps": statistics.median(blas_times), "all": blas_times,
                         "blas_threshold": 20},
        "recall_vs_truth": agree,
    }


def truth_ids(data, k):
    """The exact answers oneword's harness computed by brute force in f64 (its exact phase runs
    first); FAISS's own when this runs alone."""
    path = os.path.join(data, "truth.json")
    if not os.path.exists(path):
        import faiss

        log("no truth.u32 (run oneword-search-bench --phase exact first): using FAISS's exact answers")
        base, queries = load(data, "tokens.f32"), load(data, "tokens-queries.f32")
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)
        return index.search(queries, k)[1]
    with open(path) as f:
        meta = json.load(f)
    ids = np.fromfile(os.path.join(data, "truth.u32"), dtype="<u4").reshape(meta["queries"], meta["k"])
    return ids[:, :k]


# ---------------------------------------------------------------------------------------------
# hnsw


def hnsw(args):
    import hnswlib

    base, queries = load(args.data, "tokens.f32"), load(args.data, "tokens-queries.f32")
    truth = truth_ids(args.data, args.k)
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=base.shape[0], ef_construction=args.ef_construction, M=args.m, random_seed=100)
    index.set_num_threads(args.build_threads)
    start = time.perf_counter()
    index.add_items(base, np.arange(base.shape[0]), num_threads=args.build_threads)
    build = time.perf_counter() - start
    log(f"hnswlib build: {build:.1f} s on {args.build_threads} thread(s)")
    index.set_num_threads(1)
    sweep = []
    for ef in map(int, args.ef.split(",")):
        index.set_ef(max(ef, args.k))
        index.knn_query(queries[:10], k=args.k, num_threads=1)
        qps = []
        for _ in range(args.repeat):
            found, start = [], time.perf_counter()
            for q in queries:
                labels, _ = index.knn_query(q, k=args.k, num_threads=1)
                found.append(labels[0])
            qps.append(len(queries) / (time.perf_counter() - start))
        recall = float(np.mean([len(set(f) & set(t)) / args.k for f, t in zip(found, truth)]))
        sweep.append({"ef": ef, "recall": recall, "qps": statistics.median(qps), "all": qps})
        log(f"hnswlib ef {ef}: recall@{args.k} {recall:.4f}, {statistics.median(qps):.0f} QPS")
    return {
        "system": "hnswlib",
        "version": f"hnswlib {getattr(hnswlib, '__version__', '0.8.0')}",
        "threads": 1,
        "points": int(base.shape[0]),
        "m": args.m,
        "ef_construction": args.ef_construction,
        "build_s": build,
        "build_threads": args.build_threads,
        # The process's peak, base matrix (numpy) included.
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024),
        "sweep": sweep,
        "notes": ["space 'ip' on normalised vectors; one knn_query call per query from Python; "
                  "QPS: the median of `repeat` passes over every query"],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=["prepare", "prepare-million", "embed", "exact", "hnsw"])
    p.add_argument("--data", required=True, help="the data set folder (bench/.work/search)")
    p.add_argument("--model", help="the sentence-transformers model directory")
    p.add_argument("--corpus", help="the corpus, one text a line (prepare)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--short", type=int, default=1024, help="short sentences to embed")
    p.add_argument("--long", type=int, default=256, help="corpus lines to embed as long sentences")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--single-queries", type=int, default=300)
    p.add_argument("--batch-queries", type=int, default=512)
    p.add_argument("--batch-threads", type=int, default=2)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--build-threads", type=int, default=1, help="threads of the HNSW build (hnsw)")
    p.add_argument("--ef", default="10,16,24,32,48,64,100,200,400")
    args = p.parse_args()
    doc = {"prepare": prepare, "prepare-million": prepare_million, "embed": embed, "exact": exact, "hnsw": hnsw}[args.phase](args)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()

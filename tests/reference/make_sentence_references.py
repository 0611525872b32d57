#!/usr/bin/env python3
"""Make the sentence-embedding references that oneword's Rust tests compare against.

The reference implementation is sentence-transformers (PyTorch): it reads the same checkpoint
files (modules.json, 1_Pooling/config.json, sentence_bert_config.json) and gives the token ids
and the pooled, normalised vectors the Rust embedder must reproduce. CI never runs this script;
its outputs are committed.

Subcommands:

  tiny-bert --minilm DIR [--out DIR]
      Build a tiny BERT (MiniLM's real 30,522-token WordPiece vocabulary, 16 wide, 2 layers,
      2 heads, 128 tokens max) from seed 0 with every parameter re-randomised, and save it as a
      complete sentence-transformers directory (mean pooling, then Normalize) with MiniLM's
      tokenizer. Default DIR: tests/fixtures/tiny-bert-st.

  vectors --checkpoint DIR --out FILE
      Embed the fixed texts below with SentenceTransformer(DIR) on the CPU in float32 and write
      JSON: {"texts": [...], "ids": [[...]], "vectors": [[...]], "max_tokens": N}. The ids are
      what the model read (special tokens included, after its own truncation).

How to run: `make references` (the pinned venv of the Makefile, with sentence-transformers).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from transformers import BertConfig, BertModel

REPO = Path(__file__).resolve().parents[2]

# Awkward on purpose: almost empty, long enough to be cut at 256 tokens, non-ASCII, punctuation,
# numbers, mixed case (the tokenizer lower-cases), and a few ordinary sentences.
TEXTS = [
    "   ",
    "a",
    "Love thy neighbour as thyself.",
    "The cat sat on the mat.",
    "A feline rested upon the rug.",
    "Stock markets fell sharply on Tuesday after the announcement.",
    "Ünïcödé: naïve café, smörgåsbord, 東京タワー, Москва, 🙂🚀",
    "!!! ??? ... --- ;;; (((",
    "3.14159 is pi; 2.71828 is e; 1,000,000 is a million.",
    "In the beginning God created the heaven and the earth.",
    "HELLO World, hello WORLD.",
    "def forward(self, x): return self.linear(x)",
    " ".join(["The quick brown fox jumps over the lazy dog."] * 30),
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "tab\tseparated\tand\nnew\nlines",
]


def cmd_tiny_bert(args: argparse.Namespace) -> None:
    minilm = Path(args.minilm)
    out = Path(args.out)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=128,
        hidden_act="gelu",
    )
    model = BertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, safe_serialization=True)
    for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        shutil.copy(minilm / name, out / name)
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2) + "\n")
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 16,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }, indent=2) + "\n")
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 128, "do_lower_case": False}) + "\n"
    )
    print(f"wrote {out}")


def cmd_vectors(args: argparse.Namespace) -> None:
    model = SentenceTransformer(args.checkpoint, device="cpu")
    model.eval()
    tokenizer = model.tokenizer
    ids = [
        tokenizer(t, truncation=True, max_length=model.max_seq_length)["input_ids"] for t in TEXTS
    ]
    with torch.no_grad():
        vectors = model.encode(TEXTS, convert_to_numpy=True, batch_size=4)
    out = {
        "texts": TEXTS,
        "max_tokens": model.max_seq_length,
        "ids": ids,
        "vectors": [[float(x) for x in v] for v in vectors],
    }
    Path(args.out).write_text(json.dumps(out) + "\n")
    print(f"wrote {args.out}: {len(TEXTS)} texts, {vectors.shape[1]} dims")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("tiny-bert", help="write the tiny random sentence-transformers BERT")
    p.add_argument("--minilm", required=True, help="all-MiniLM-L6-v2's directory, for its tokenizer")
    p.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "tiny-bert-st"))
    p.set_defaults(run=cmd_tiny_bert)
    p = sub.add_parser("vectors", help="write reference ids and vectors of fixed texts")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_vectors)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()

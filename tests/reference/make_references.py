#!/usr/bin/env python3
"""Make the reference fixtures that oneword's Rust tests compare against.

The Rust model and tokenizer are checked against an independent implementation: Hugging Face
transformers (PyTorch) for the model, and a pure-Python byte-level BPE (the algorithm of OpenAI's
GPT-2 `encoder.py`) cross-checked against transformers' `GPT2Tokenizer` for the tokenizer. This
script writes those references; the Rust tests only read them, and CI never runs this script.

Subcommands (default paths are in the repository, whatever the working directory):

  hf-checkpoint [--out DIR]
      Build a tiny GPT-2 (vocab 50257, 1024 positions, 32 wide, 2 layers, 4 heads) from seed 0,
      re-randomize every parameter (so that no loading bug hides behind an init of zeros or
      ones), and save it with `save_pretrained` plus the fixture vocab.json and merges.txt, as a
      complete Hugging Face model directory. Default DIR: tests/fixtures/tiny-gpt2-hf.

  logits --checkpoint DIR --out FILE
      Load any GPT-2 directory with `GPT2LMHeadModel.from_pretrained` (float32, eval), fail if
      a weight is missing, unexpected or not the one in the file, and write as safetensors the
      last-position logits of four fixed prompts (1, 9, about 60 and about 300 tokens):
      `prompt_{i}_ids` (I64 [len]) and `prompt_{i}_logits` (F32 [vocab]) for i = 0..3.

  internals --checkpoint DIR --out FILE
      What the essay's "inside the model" instruments show, for two prompts ("The best thing
      about AI is its ability to", and "hello" x16 then "bye" x6 as in the essay's attention
      picture), from the same eager-attention model: `prompt_{i}_ids` (I64 [len]),
      `prompt_{i}_hidden_{l}` (F32 [len, n_embd], transformers' `output_hidden_states`, l = 0
      for the embeddings up to n_layer, the last one after the final layer norm) and
      `prompt_{i}_attention_{l}` (F32 [n_head, len, len], `output_attentions`, l < n_layer).

  tokenizer-cases [--out FILE]
      Write the reference GPT-2 token ids of about 50 awkward texts (emoji, CJK, whitespace runs,
      contractions, `<|endoftext|>` with and without special-token handling, ...) as JSON.
      Default FILE: tests/fixtures/tokenizer-cases.json.

  shaping-cases [--out FILE]
      The sampler's shaping against transformers' logits warpers, in the order `generate` applies
      them (temperature, top_k, top_p, min_p, typical_p), after its repetition penalty and OpenAI's
      frequency and presence penalties over a fixed history: the first 1,024 logits of the committed
      tiny model's second prompt (tests/fixtures/reference/tiny-gpt2-random-logits.safetensors),
      and for each case the ids the warpers keep with their log-probabilities. Default FILE:
      tests/fixtures/reference/shaping-cases.json.

How to run: `make references`, which creates `.venv-ref` (python3 -m venv, then
`pip install torch transformers safetensors numpy`, versions pinned in the Makefile) and runs
the subcommands in the order above. The outputs are committed; rerun only to change them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from functools import lru_cache
from pathlib import Path

import regex
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

REPO = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = REPO / "tests" / "fixtures" / "gpt2-tokenizer"
EOT = "<|endoftext|>"
EOT_ID = 50256

# ---------------------------------------------------------------------------------------------
# Tokenizer: a pure-Python byte-level BPE, written from the GPT-2 paper's description and
# OpenAI's encoder.py. It is the reference because the Rust side uses the `tokenizers` crate,
# the same code that backs transformers 5's GPT2Tokenizer; every case is also checked against
# that class, so the two must agree.
# ---------------------------------------------------------------------------------------------

# GPT-2's pre-tokenizer: contractions, optional space + letters, optional space + digits,
# optional space + other symbols, whitespace not followed by a non-space, other whitespace.
PRETOKENIZE = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


class ReferenceBpe:
    """GPT-2 byte-level BPE over vocab.json and merges.txt, with `<|endoftext|>` optional."""

    def __init__(self, vocab_path: Path, merges_path: Path) -> None:
        self.encoder: dict[str, int] = json.loads(vocab_path.read_text(encoding="utf-8"))
        lines = merges_path.read_text(encoding="utf-8").split("\n")
        if lines[0].startswith("#version"):
            lines = lines[1:]
        pairs = [tuple(line.split(" ")) for line in lines if line]
        self.ranks = {pair: rank for rank, pair in enumerate(pairs)}
        self.byte_map = bytes_to_unicode()
        self.decoder = {i: s for s, i in self.encoder.items()}
        self.byte_unmap = {c: b for b, c in self.byte_map.items()}
        self.bpe = lru_cache(maxsize=None)(self._bpe)

    def _bpe(self, word: str) -> tuple[str, ...]:
        parts = list(word)
        while len(parts) > 1:
            best = min(
                range(len(parts) - 1),
                key=lambda i: self.ranks.get((parts[i], parts[i + 1]), float("inf")),
            )
            pair = (parts[best], parts[best + 1])
            if pair not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)

    def encode_ordinary(self, text: str) -> list[int]:
        ids = []
        for piece in PRETOKENIZE.findall(text):
            mapped = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self.bpe(mapped))
        return ids

    def encode(self, text: str, allow_special: bool) -> list[int]:
        if not allow_special:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for i, segment in enumerate(text.split(EOT)):
            if i > 0:
                ids.append(EOT_ID)
            ids.extend(self.encode_ordinary(segment))
        return ids

    def decode_bytes(self, ids: list[int]) -> bytes:
        return bytes(self.byte_unmap[c] for i in ids for c in self.decoder[i])


def reference_bpe() -> ReferenceBpe:
    return ReferenceBpe(TOKENIZER_DIR / "vocab.json", TOKENIZER_DIR / "merges.txt")


def hf_tokenizer() -> GPT2Tokenizer:
    return GPT2Tokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"))


def hf_encode(tok: GPT2Tokenizer, text: str, allow_special: bool) -> list[int]:
    return tok.encode(text, add_special_tokens=False, split_special_tokens=not allow_special)


# ---------------------------------------------------------------------------------------------
# hf-checkpoint
# ---------------------------------------------------------------------------------------------

TINY_CONFIG = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 32, "n_layer": 2, "n_head": 4}
STD = 0.2


def cmd_hf_checkpoint(args: argparse.Namespace) -> None:
    out = resolve(args.out)
    torch.manual_seed(0)
    config = GPT2Config(**TINY_CONFIG, bos_token_id=EOT_ID, eos_token_id=EOT_ID)
    model = GPT2LMHeadModel(config)

    # transformers initialises biases to 0 and layer-norm weights to 1; a loader that skipped
    # them would still match. Draw every parameter again from a generator of its own, in name
    # order, so the values do not depend on how many numbers the library's init consumed.
    layer_norm_weights = {
        f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)
    }
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32) * STD
            param.copy_(noise + 1.0 if name in layer_norm_weights else noise)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr(), (
        "lm_head must stay tied to wte"
    )

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    (out / "model.safetensors").chmod(0o644)  # safetensors writes 0600
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(TOKENIZER_DIR / name, out / name)

    with safe_open(out / "model.safetensors", framework="pt") as f:
        for key in sorted(f.keys()):
            print(f"{key} {f.get_slice(key).get_dtype()} {list(f.get_slice(key).get_shape())}")
    print(f"wrote {display(out)}")


# ---------------------------------------------------------------------------------------------
# logits
# ---------------------------------------------------------------------------------------------

PARAGRAPH = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a tin of "
    "oil and a small notebook. He wrote down the colour of the sea, the direction of the wind, "
    "and the names of the ships that passed, though most nights none did. Nothing much happened "
    "there."
)

VARIATIONS = [
    "In winter the storms came from the north and rattled the windows until dawn.",
    "In spring the gulls returned, and the keeper counted them from the gallery.",
    "In summer tourists asked him whether he was lonely; he said he had the light.",
    "In autumn the fog rolled in so thick that the beam seemed to stop at the glass.",
]
EPILOGUE = "Years later, his notebooks filled a whole shelf in the village library."


def prompts() -> list[str]:
    # The paragraph four times with a different ending each time: about 300 tokens.
    long_text = " ".join(f"{PARAGRAPH} {variation}" for variation in VARIATIONS) + " " + EPILOGUE
    return [
        "Hello",
        "The best thing about AI is its ability to",
        PARAGRAPH,
        long_text,
    ]


# Buffers that older transformers versions saved and that carry no learned value.
IGNORABLE = re.compile(r"(^|\.)h\.\d+\.attn\.(bias|masked_bias)$")


def check_loading(model: GPT2LMHeadModel, info: dict, checkpoint: Path) -> None:
    """Fail unless every weight of the model came from the checkpoint file."""
    problems = []
    for kind in ("missing_keys", "mismatched_keys", "error_msgs"):
        if info.get(kind):
            problems.append(f"{kind}: {sorted(map(str, info[kind]))}")
    unexpected = [k for k in info.get("unexpected_keys", []) if not IGNORABLE.search(k)]
    if unexpected:
        problems.append(f"unexpected_keys: {sorted(unexpected)}")
    if problems:
        sys.exit(f"error: loading {checkpoint} was not clean:\n  " + "\n  ".join(problems))

    # from_pretrained can initialise a weight it did not find without listing it (for example a
    # tied one), so compare every parameter with the tensors in the file directly.
    files = sorted(checkpoint.glob("model*.safetensors"))  # one file, or the shards of one
    if not files:
        sys.exit(f"error: no model*.safetensors file in {checkpoint}")
    stored: dict[str, torch.Tensor] = {}
    for path in files:
        for key, value in load_file(path).items():
            stored[key.removeprefix("transformer.")] = value
    for name, param in model.state_dict().items():
        key = name.removeprefix("transformer.")
        if key == "lm_head.weight" and key not in stored:
            if not model.config.tie_word_embeddings:
                sys.exit("error: lm_head.weight is missing and the config does not tie it")
            key = "wte.weight"
        if key not in stored:
            sys.exit(f"error: {name} is not in the checkpoint")
        if not torch.equal(stored[key].to(torch.float32), param.detach()):
            sys.exit(f"error: {name} in the model differs from {key} in the checkpoint")


def sort_header(path: Path) -> None:
    """Rewrite a safetensors header with sorted keys, so that reruns give identical bytes.

    safetensors writes the metadata in hash-map order, which changes from run to run.
    """
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    encoded = text.encode("utf-8")
    if len(encoded) > size:
        sys.exit(f"error: sorted header of {path} is longer than the original")
    data[8 : 8 + size] = encoded.ljust(size, b" ")  # the format allows trailing spaces
    path.write_bytes(bytes(data))


def load_model(checkpoint: Path) -> GPT2LMHeadModel:
    """The checkpoint in float32 with eager attention (the one that can return its weights)."""
    model, info = GPT2LMHeadModel.from_pretrained(
        checkpoint,
        dtype=torch.float32,
        attn_implementation="eager",
        output_loading_info=True,
    )
    model.eval()
    check_loading(model, info, checkpoint)
    return model


def save_reference(tensors: dict, out: Path, metadata: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out, metadata=metadata)
    sort_header(out)
    out.chmod(0o644)  # safetensors writes 0600
    print(f"wrote {display(out)}")


def cmd_logits(args: argparse.Namespace) -> None:
    checkpoint, out = resolve(args.checkpoint), resolve(args.out)
    model = load_model(checkpoint)

    tok, ref = hf_tokenizer(), reference_bpe()
    tensors: dict[str, torch.Tensor] = {}
    metadata = {
        "generator": "tests/reference/make_references.py logits",
        "checkpoint": checkpoint.name,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "dtype": "float32",
        "attn_implementation": "eager",
    }
    for i, text in enumerate(prompts()):
        ids = hf_encode(tok, text, allow_special=False)
        if ids != ref.encode(text, allow_special=False):
            sys.exit(f"error: tokenizers disagree on prompt {i}")
        if len(ids) > model.config.n_positions:
            sys.exit(
                f"error: prompt {i} has {len(ids)} tokens, context is {model.config.n_positions}"
            )
        input_ids = torch.tensor([ids], dtype=torch.int64)
        with torch.no_grad():
            logits = model(input_ids=input_ids, use_cache=False).logits
        tensors[f"prompt_{i}_ids"] = input_ids[0].clone()
        tensors[f"prompt_{i}_logits"] = logits[0, -1].to(torch.float32).contiguous()
        metadata[f"prompt_{i}_text"] = text
        print(f"prompt {i}: {len(ids)} tokens, argmax {int(logits[0, -1].argmax())}")
    save_reference(tensors, out, metadata)


INTERNALS_PROMPTS = [
    "The best thing about AI is its ability to",
    " ".join(["hello"] * 16 + ["bye"] * 6),
]


def cmd_internals(args: argparse.Namespace) -> None:
    checkpoint, out = resolve(args.checkpoint), resolve(args.out)
    model = load_model(checkpoint)
    tok, ref = hf_tokenizer(), reference_bpe()
    tensors: dict[str, torch.Tensor] = {}
    metadata = {
        "generator": "tests/reference/make_references.py internals",
        "checkpoint": checkpoint.name,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "dtype": "float32",
        "attn_implementation": "eager",
    }
    for i, text in enumerate(INTERNALS_PROMPTS):
        ids = hf_encode(tok, text, allow_special=False)
        if ids != ref.encode(text, allow_special=False):
            sys.exit(f"error: tokenizers disagree on internals prompt {i}")
        input_ids = torch.tensor([ids], dtype=torch.int64)
        with torch.no_grad():
            output = model(
                input_ids=input_ids,
                use_cache=False,
                output_hidden_states=True,
                output_attentions=True,
            )
        tensors[f"prompt_{i}_ids"] = input_ids[0].clone()
        for layer, state in enumerate(output.hidden_states):
            tensors[f"prompt_{i}_hidden_{layer}"] = state[0].contiguous()
        for layer, weights in enumerate(output.attentions):
            tensors[f"prompt_{i}_attention_{layer}"] = weights[0].contiguous()
        metadata[f"prompt_{i}_text"] = text
        print(
            f"internals prompt {i}: {len(ids)} tokens, {len(output.hidden_states)} hidden states, "
            f"{len(output.attentions)} attention layers"
        )
    save_reference(tensors, out, metadata)


# ---------------------------------------------------------------------------------------------
# tokenizer-cases
# ---------------------------------------------------------------------------------------------

ORDINARY_TEXTS = [
    "Hello world",
    "Hello",
    " Hello world",
    "The best thing about AI is its ability to",
    (
        "On Tuesday the committee met at noon, argued for three hours about the budget, and "
        "agreed only that they would meet again; nobody, it seemed, wanted to decide anything."
    ),
    "🦀",
    "I love Rust 🦀 and crabs 🦀🦀🦀",
    "👩‍👩‍👧 is one grapheme of five code points",
    "flags: 🇫🇷🇯🇵🇺🇸 🏴‍☠️",
    "👍🏽 thumbs up 😀😃😄😁",
    "你好，世界！今天天气很好。",
    "こんにちは世界。カタカナとひらがな、漢字。",
    "안녕하세요, 세계! 한국어 텍스트입니다.",
    "café naïve Zoë",
    "cafe\u0301 with a combining accent",
    "a          b",
    "\ttab\tseparated\t\tvalues\t",
    "trailing spaces   ",
    "   leading spaces",
    "\n\n",
    "line1\nline2\r\n",
    "first paragraph.\n\n\nsecond paragraph.\n  indented line\n",
    "I'm you're he'll they've we'd don't it's O'Neil",
    "I'M YOU'RE DON'T IT'S",
    "3.14159 1,000,000 2026-11-28 0x1F",
    "1234567890 12345678901234567890 ٣٤٥ ½",
    'fn main() {\n    println!("Hello, world!");\n}\n',
    "def f(x):\n\treturn x ** 2  # square\n\nprint(f(3))\n",
    "https://example.com/path/to/page?query=one&lang=en#section-2",
    "user.name+tag@example.org",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "Привет, мир! Как дела?",
    "Hello мир 世界 عالم नमस्ते 🌍",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "supercalifragilisticexpialidocious" * 6,
    "",
    " ",
    "\u00a0non-breaking\u00a0spaces\u00a0",
    "zero\u200bwidth\u200bspace and\u3000ideographic space",
    "©®™ ∑∫√ €£¥ «quotes» “curly” ‘single’ — dash…",
    "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ",
    "<|endoftext",
    "<| endoftext |>",
]

SPECIAL_TEXTS = [
    EOT,
    f"Hello{EOT}world",
    f"before {EOT} after\n{EOT}{EOT}",
    f"{EOT} starts and ends {EOT}",
]


def tokenizer_cases() -> list[tuple[str, bool]]:
    cases = [(text, False) for text in ORDINARY_TEXTS]
    for text in SPECIAL_TEXTS:
        cases += [(text, True), (text, False)]
    return cases


def cmd_tokenizer_cases(args: argparse.Namespace) -> None:
    out = resolve(args.out)
    ref, tok = reference_bpe(), hf_tokenizer()

    # Hand-checked anchors from the GPT-2 vocabulary.
    for text, expected in [("Hello world", [15496, 995]), (" Hello world", [18435, 995])]:
        got = ref.encode(text, allow_special=False)
        if got != expected:
            sys.exit(f"error: {text!r} gave {got}, expected {expected}")

    cases = []
    for text, allow_special in tokenizer_cases():
        ids = ref.encode(text, allow_special)
        theirs = hf_encode(tok, text, allow_special)
        if ids != theirs:
            sys.exit(f"error: {text!r} (allow_special={allow_special}): {ids} != {theirs}")
        # The vocabulary spells id 50256 as the text `<|endoftext|>`, so every case round-trips.
        if ref.decode_bytes(ids) != text.encode("utf-8"):
            sys.exit(f"error: {text!r} does not round-trip")
        specials = ids.count(EOT_ID)
        expected_specials = text.count(EOT) if allow_special else 0
        if specials != expected_specials:
            sys.exit(f"error: {text!r} has {specials} special ids, expected {expected_specials}")
        cases.append({"text": text, "allow_special": allow_special, "ids": ids})

    document = {
        "source": (
            "pure-Python GPT-2 byte-level BPE (OpenAI encoder.py algorithm) in "
            "tests/reference/make_references.py, identical on every case to transformers "
            f"{transformers.__version__} GPT2Tokenizer (tokenizers backend); "
            "vocab.json and merges.txt from tests/fixtures/gpt2-tokenizer"
        ),
        "cases": cases,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    # One case per line keeps diffs readable when a case is added.
    lines = ",\n  ".join(json.dumps(case, ensure_ascii=False) for case in cases)
    source = json.dumps(document["source"], ensure_ascii=False)
    text = f'{{\n "source": {source},\n "cases": [\n  {lines}\n ]\n}}\n'
    assert json.loads(text) == document
    out.write_text(text, encoding="utf-8")
    print(f"wrote {len(cases)} cases to {display(out)}")


SHAPING_CASES = [
    {"temperature": 1.0, "min_p": 0.1},
    {"temperature": 0.7, "min_p": 0.05},
    {"temperature": 1.0, "typical_p": 0.5},
    {"temperature": 0.8, "typical_p": 0.9},
    {"temperature": 1.3, "typical_p": 0.2},
    {"temperature": 1.0, "top_k": 200, "top_p": 0.9, "min_p": 0.2, "typical_p": 0.7},
    {"temperature": 0.9, "top_p": 0.95, "typical_p": 0.95},
    {"temperature": 1.0, "repetition_penalty": 1.3},
    {"temperature": 0.7, "repetition_penalty": 0.8, "top_k": 50},
    {"temperature": 1.0, "frequency_penalty": 0.5, "presence_penalty": 0.3},
    {"temperature": 0.9, "repetition_penalty": 1.2, "frequency_penalty": -1.0,
     "presence_penalty": 1.5, "top_p": 0.9},
]


def shaping_history(logits: torch.Tensor) -> dict:
    """A sequence's tokens for the penalty cases: likely and unlikely ids (positive and negative
    logits), some in the prompt only, some generated once, some several times."""
    order = torch.argsort(logits, descending=True).tolist()
    prompt = [order[0], order[2], order[2], order[-1], order[500]]
    generated = [order[1], order[1], order[1], order[2], order[3], order[-2], order[-2], order[40]]
    return {"prompt": prompt, "generated": generated}


def apply_penalties(scores: torch.Tensor, case: dict, history: dict) -> torch.Tensor:
    """transformers' repetition penalty over prompt + generated, then OpenAI's frequency and
    presence penalties over the generated tokens (its documented formula, vLLM's order)."""
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    if "repetition_penalty" in case:
        input_ids = torch.tensor([history["prompt"] + history["generated"]])
        scores = RepetitionPenaltyLogitsProcessor(case["repetition_penalty"])(input_ids, scores)
    counts = torch.zeros_like(scores)
    for token in history["generated"]:
        counts[0, token] += 1
    frequency = case.get("frequency_penalty", 0.0)
    presence = case.get("presence_penalty", 0.0)
    return scores - counts * frequency - (counts > 0).to(scores.dtype) * presence


def cmd_shaping_cases(args: argparse.Namespace) -> None:
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        TypicalLogitsWarper,
    )

    out = resolve(args.out)
    source = REPO / "tests" / "fixtures" / "reference" / "tiny-gpt2-random-logits.safetensors"
    logits = load_file(str(source))["prompt_1_logits"][:1024].to(torch.float32)
    cases = []
    history = shaping_history(logits)
    for case in SHAPING_CASES:
        penalized = any(k.endswith("_penalty") for k in case)
        warpers = [TemperatureLogitsWarper(case["temperature"])]
        if "top_k" in case:
            warpers.append(TopKLogitsWarper(top_k=case["top_k"]))
        if "top_p" in case:
            warpers.append(TopPLogitsWarper(top_p=case["top_p"]))
        if "min_p" in case:
            warpers.append(MinPLogitsWarper(min_p=case["min_p"]))
        if "typical_p" in case:
            warpers.append(TypicalLogitsWarper(mass=case["typical_p"]))
        scores = logits.clone()[None, :]
        if penalized:
            scores = apply_penalties(scores, case, history)
        for warper in warpers:
            scores = warper(None, scores)
        logprobs = torch.log_softmax(scores.to(torch.float64), dim=-1)[0]
        kept = torch.nonzero(torch.isfinite(logprobs)).flatten().tolist()
        cases.append({
            "shaping": case,
            **({"history": history} if penalized else {}),
            "kept": kept,
            "logprobs": [round(float(logprobs[i]), 7) for i in kept],
        })
    document = {
        "source": (
            f"transformers {transformers.__version__} logits warpers (temperature, top_k, "
            "top_p, min_p, typical_p, in generate's order) after its repetition penalty and "
            "OpenAI's frequency and presence penalties (over the case's history) on the first "
            "1024 logits of prompt_1 in "
            "tests/fixtures/reference/tiny-gpt2-random-logits.safetensors"
        ),
        "logits": [float(x) for x in logits],
        "cases": cases,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {display(out)}")


# ---------------------------------------------------------------------------------------------


def resolve(path: str) -> Path:
    return Path(path).resolve()


def display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("hf-checkpoint", help="write the tiny random GPT-2 checkpoint")
    p.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "tiny-gpt2-hf"))
    p.set_defaults(run=cmd_hf_checkpoint)

    p = sub.add_parser("logits", help="write last-position logits of fixed prompts")
    p.add_argument("--checkpoint", required=True, help="a GPT-2 model directory")
    p.add_argument("--out", required=True, help="the safetensors file to write")
    p.set_defaults(run=cmd_logits)

    p = sub.add_parser("internals", help="write hidden states and attention weights")
    p.add_argument("--checkpoint", required=True, help="a GPT-2 model directory")
    p.add_argument("--out", required=True, help="the safetensors file to write")
    p.set_defaults(run=cmd_internals)

    p = sub.add_parser("tokenizer-cases", help="write reference GPT-2 token ids as JSON")
    p.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "tokenizer-cases.json"))
    p.set_defaults(run=cmd_tokenizer_cases)

    p = sub.add_parser("shaping-cases", help="write transformers' warpers on fixed logits as JSON")
    p.add_argument(
        "--out", default=str(REPO / "tests" / "fixtures" / "reference" / "shaping-cases.json")
    )
    p.set_defaults(run=cmd_shaping_cases)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()

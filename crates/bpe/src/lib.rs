//! GPT-2's byte-level BPE (Radford et al. 2019, *Language Models are Unsupervised Multitask
//! Learners*; reference: OpenAI's `encoder.py`) on the `tokenizers` crate: loading it from
//! `tokenizer.json` or `vocab.json` + `merges.txt`, encoding with or without special-token
//! spellings, decoding to exact bytes, and the whole vocabulary as bytes.
//!
//! Offsets are byte offsets into the UTF-8 input. A byte-level token can hold part of a
//! multi-byte character (🦀 is the three tokens `F0 9F`, `A6`, `80`); every token that holds part
//! of a character gets the whole character's offsets, so `text[start..end]` is always a valid
//! slice, and the token's exact bytes are in its piece.
//!
//! Shared by the tokenizer service and the n-gram baseline, which counts GPT-2 tokens.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use oneword_checkpoint::{Gpt2Config, TokenizerFiles};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Encoding, PostProcessorWrapper, Tokenizer};

use crate::byte_level::ByteDecoder;

mod byte_level;
/// Properties shared by the property tests and the fuzz targets (`make fuzz`); not an API.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod checks;
#[cfg(test)]
mod properties;

/// Why a text could not be encoded or ids decoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Decode was given an id the vocabulary does not have.
    #[error("`ids[{index}]` = {id} is outside the vocabulary of {vocab_size} tokens")]
    UnknownId {
        index: usize,
        id: u32,
        vocab_size: usize,
    },
    /// The `tokenizers` crate failed on valid input (a bug here or there).
    #[error("tokenizing failed: {0}")]
    Tokenizer(String),
}

/// GPT-2's end-of-text token, its only special token.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// One text's tokens: ids and byte offsets `[start, end)` into the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}

/// A loaded tokenizer and its vocabulary as bytes; immutable and shared by all requests.
pub struct BpeTokenizer {
    /// Splits special-token spellings out of the text as special tokens.
    with_special: Tokenizer,
    /// Tokenizes special-token spellings as ordinary text.
    plain: Tokenizer,
    pieces: Vec<Vec<u8>>,
    /// Each token's text, U+FFFD where it holds part of a character.
    texts: Vec<String>,
    special: Vec<bool>,
    special_ids: Vec<u32>,
    eos_token_id: u32,
    config: Option<Gpt2Config>,
}

impl BpeTokenizer {
    /// Loads the tokenizer of a model directory: `tokenizer.json`, else GPT-2's tokenizer built
    /// from `vocab.json` + `merges.txt`. `config.json` is optional; without it the end-of-text
    /// token is `<|endoftext|>` of the vocabulary.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let files = TokenizerFiles::find(dir)?;
        let config = if dir.join("config.json").is_file() {
            Some(Gpt2Config::from_dir(dir)?)
        } else {
            None
        };
        let mut tokenizer = match &files {
            TokenizerFiles::Json(path) => Tokenizer::from_file(path)
                .map_err(|e| anyhow!("reading {}: {e}", path.display()))?,
            TokenizerFiles::VocabMerges { vocab, merges } => gpt2_tokenizer(vocab, merges)?,
        };
        // GPT-2 adds no template tokens; dropping the post-processor also keeps a tokenizer.json
        // that trims offsets from trimming ours, so a token's offsets cover its whole piece.
        tokenizer.with_post_processor(None::<PostProcessorWrapper>);
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow!("turning truncation off: {e}"))?;
        tokenizer.with_padding(None);
        add_special_tokens(&mut tokenizer, config.as_ref())?;

        let (pieces, special) = vocabulary_bytes(&tokenizer)?;
        let eos_token_id = match &config {
            Some(c) => c.eos_token_id,
            None => tokenizer.token_to_id(END_OF_TEXT).with_context(|| {
                format!(
                    "{} has no config.json to name the end-of-text token and its vocabulary has no {END_OF_TEXT}",
                    dir.display()
                )
            })?,
        };
        if eos_token_id as usize >= pieces.len() {
            bail!(
                "`eos_token_id` {eos_token_id} is outside the vocabulary of {} tokens",
                pieces.len()
            );
        }
        if let Some(c) = config.as_ref().filter(|c| c.vocab_size != pieces.len()) {
            tracing::warn!(
                config = c.vocab_size,
                tokenizer = pieces.len(),
                "config.json's vocab_size differs from the tokenizer's; ids at or above the tokenizer's count are refused"
            );
        }
        let mut plain = tokenizer.clone();
        plain.set_encode_special_tokens(true);
        Ok(BpeTokenizer {
            with_special: tokenizer,
            plain,
            texts: pieces
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
            special_ids: (0u32..)
                .zip(&special)
                .filter_map(|(id, s)| s.then_some(id))
                .collect(),
            pieces,
            special,
            eos_token_id,
            config,
        })
    }

    /// Encodes one text. With `allow_special`, spellings of special tokens become those tokens;
    /// without, they are tokenized as the ordinary text they are.
    pub fn encode(&self, text: &str, allow_special: bool) -> Result<Encoded, Error> {
        let encoding = self
            .tokenizer(allow_special)
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoded(&encoding))
    }

    /// Encodes many texts on the `tokenizers` thread pool; blocks until all are done.
    pub fn encode_batch(
        &self,
        texts: &[String],
        allow_special: bool,
    ) -> Result<Vec<Encoded>, Error> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self
            .tokenizer(allow_special)
            .encode_batch(inputs, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encodings.iter().map(encoded).collect())
    }

    /// The exact bytes of `ids`, leaving special tokens out if asked.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<Vec<u8>, Error> {
        let mut raw = Vec::with_capacity(ids.len() * 4);
        for (index, &id) in ids.iter().enumerate() {
            let piece = self.pieces.get(id as usize).ok_or(Error::UnknownId {
                index,
                id,
                vocab_size: self.vocab_size(),
            })?;
            if !(skip_special_tokens && self.special[id as usize]) {
                raw.extend_from_slice(piece);
            }
        }
        Ok(raw)
    }

    /// Number of tokens, special ones included.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// `pieces()[id]` is the exact bytes of token `id`.
    pub fn pieces(&self) -> &[Vec<u8>] {
        &self.pieces
    }

    /// The exact bytes of token `id`; `id` must come from this tokenizer.
    pub fn piece(&self, id: u32) -> &[u8] {
        &self.pieces[id as usize]
    }

    /// The text of token `id` (U+FFFD for a partial character); `id` must come from this tokenizer.
    pub fn text(&self, id: u32) -> &str {
        &self.texts[id as usize]
    }

    /// Whether token `id` is special; `id` must come from this tokenizer.
    pub fn is_special(&self, id: u32) -> bool {
        self.special[id as usize]
    }

    /// Ids of the special tokens, ascending.
    pub fn special_ids(&self) -> &[u32] {
        &self.special_ids
    }

    pub fn eos_token_id(&self) -> u32 {
        self.eos_token_id
    }

    /// The model's `config.json`, if the directory has one.
    pub fn config(&self) -> Option<&Gpt2Config> {
        self.config.as_ref()
    }

    fn tokenizer(&self, allow_special: bool) -> &Tokenizer {
        if allow_special {
            &self.with_special
        } else {
            &self.plain
        }
    }
}

fn encoded(encoding: &Encoding) -> Encoded {
    Encoded {
        ids: encoding.get_ids().to_vec(),
        offsets: encoding.get_offsets().to_vec(),
    }
}

/// GPT-2's tokenizer as `transformers` saves it in `tokenizer.json`: BPE over GPT-2's pre-split
/// regex on the byte-level alphabet, no prefix space, and the byte-level decoder.
fn gpt2_tokenizer(vocab: &Path, merges: &Path) -> anyhow::Result<Tokenizer> {
    let utf8 = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .with_context(|| format!("{} is not a UTF-8 path", p.display()))
    };
    let bpe = BPE::from_file(&utf8(vocab)?, &utf8(merges)?)
        .build()
        .map_err(|e| anyhow!("reading {} and {}: {e}", vocab.display(), merges.display()))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::new(false, true, true)));
    Ok(tokenizer)
}

/// Makes `<|endoftext|>` and config.json's end-of-text token special, unless they already are.
fn add_special_tokens(
    tokenizer: &mut Tokenizer,
    config: Option<&Gpt2Config>,
) -> anyhow::Result<()> {
    let mut wanted: Vec<String> = Vec::new();
    if tokenizer.token_to_id(END_OF_TEXT).is_some() {
        wanted.push(END_OF_TEXT.to_owned());
    }
    if let Some(c) = config {
        let eos = tokenizer.id_to_token(c.eos_token_id).with_context(|| {
            format!(
                "config.json's `eos_token_id` {} is not in the tokenizer's vocabulary",
                c.eos_token_id
            )
        })?;
        wanted.push(eos);
    }
    let existing = tokenizer.get_added_tokens_decoder();
    wanted.retain(|w| !existing.values().any(|t| t.special && t.content == *w));
    wanted.dedup();
    tokenizer
        .add_special_tokens(wanted.into_iter().map(|w| AddedToken::from(w, true)))
        .map_err(|e| anyhow!("adding special tokens: {e}"))?;
    Ok(())
}

/// Every token's exact bytes and special flag, indexed by id. Added tokens are matched in the raw
/// text, so their bytes are their content; the model's tokens are spelled in the byte-level alphabet.
fn vocabulary_bytes(tokenizer: &Tokenizer) -> anyhow::Result<(Vec<Vec<u8>>, Vec<bool>)> {
    let vocab = tokenizer.get_vocab(true);
    let size = vocab.values().max().map_or(0, |&max| max as usize + 1);
    let mut spellings: Vec<Option<String>> = vec![None; size];
    for (spelling, id) in vocab {
        spellings[id as usize] = Some(spelling);
    }
    let added: HashMap<u32, AddedToken> =
        tokenizer.get_added_tokens_decoder().into_iter().collect();
    let bytes = ByteDecoder::new();
    let mut pieces = Vec::with_capacity(size);
    let mut special = Vec::with_capacity(size);
    for (id, spelling) in (0u32..).zip(spellings) {
        let spelling = spelling.with_context(|| {
            format!(
                "the vocabulary has no token with id {id}, but ids run up to {}",
                size - 1
            )
        })?;
        let piece = match added.get(&id) {
            Some(token) => token.content.as_bytes().to_vec(),
            None => bytes.decode(&spelling).with_context(|| {
                format!("token {id} {spelling:?} is not spelled in GPT-2's byte-level alphabet")
            })?,
        };
        pieces.push(piece);
        special.push(added.get(&id).is_some_and(|t| t.special));
    }
    if pieces.is_empty() {
        bail!("the vocabulary is empty");
    }
    Ok((pieces, special))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use super::*;

    fn gpt2() -> &'static BpeTokenizer {
        static TOKENIZER: OnceLock<BpeTokenizer> = OnceLock::new();
        TOKENIZER.get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/gpt2-tokenizer");
            BpeTokenizer::load(&dir).expect("the committed fixture loads")
        })
    }

    #[test]
    fn loads_gpt2_without_config_json() {
        let t = gpt2();
        assert_eq!(t.vocab_size(), 50257);
        assert_eq!(t.eos_token_id(), 50256);
        assert_eq!(t.special_ids(), &[50256]);
        assert_eq!(t.piece(50256), END_OF_TEXT.as_bytes());
        assert_eq!(t.piece(220), b" ");
        assert_eq!(t.piece(198), b"\n");
        assert!(t.config().is_none());
    }

    #[test]
    fn offsets_are_bytes_and_partial_characters_share_the_character() {
        let t = gpt2();
        let e = t.encode("a🦀b", false).unwrap();
        assert_eq!(e.ids, [64, 8582, 99, 222, 65]);
        assert_eq!(e.offsets, [(0, 1), (1, 5), (1, 5), (1, 5), (5, 6)]);
        let e = t.encode("é🦀", false).unwrap();
        let covered: Vec<&[u8]> = e.ids.iter().map(|&id| t.piece(id)).collect();
        assert_eq!(covered.concat(), "é🦀".as_bytes());
        assert_eq!(e.offsets.first(), Some(&(0, 2)));
        assert_eq!(e.offsets.last(), Some(&(2, 6)));
    }

    #[test]
    fn special_spellings_follow_allow_special() {
        let t = gpt2();
        assert_eq!(t.encode("a<|endoftext|>", true).unwrap().ids, [64, 50256]);
        let plain = t.encode("a<|endoftext|>", false).unwrap();
        assert_eq!(plain.ids, [64, 27, 91, 437, 1659, 5239, 91, 29]);
        assert_eq!(plain.offsets.last(), Some(&(13, 14)));
    }

    #[test]
    fn decode_skips_specials_and_names_unknown_ids() {
        let t = gpt2();
        assert_eq!(
            t.decode(&[15496, 50256, 995], false).unwrap(),
            b"Hello<|endoftext|> world"
        );
        assert_eq!(
            t.decode(&[15496, 50256, 995], true).unwrap(),
            b"Hello world"
        );
        let e = t.decode(&[1, 2, 3, 50300], false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`ids[3]` = 50300 is outside the vocabulary of 50257 tokens"
        );
    }

    #[test]
    fn tokenizer_json_gives_the_same_tokens_even_if_it_trims_offsets() {
        let t = gpt2();
        let mut saved = t.with_special.clone();
        // transformers' own GPT-2 tokenizer.json has a ByteLevel post-processor; this one also
        // trims offsets, which must not leak into ours.
        saved.with_post_processor(Some(ByteLevel::new(false, true, true)));
        let dir = tempfile::tempdir().unwrap();
        saved
            .save(dir.path().join("tokenizer.json"), false)
            .unwrap();
        let loaded = BpeTokenizer::load(dir.path()).unwrap();
        assert_eq!(loaded.pieces(), t.pieces());
        assert_eq!(loaded.special_ids(), &[50256]);
        for (text, allow_special) in [("Hello world 🦀 <|endoftext|>", true), (" a  b\n", false)]
        {
            assert_eq!(
                loaded.encode(text, allow_special).unwrap(),
                t.encode(text, allow_special).unwrap()
            );
        }
        assert_eq!(loaded.encode(" world", false).unwrap().offsets, [(0, 6)]);
    }
}

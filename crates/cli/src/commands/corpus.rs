//! The essay's n-gram instruments over a corpus: letter frequencies, letter pairs, random words
//! and sentences. The decoder counts its corpus, or a text file sent with the request.

use oneword_proto::gateway::v1 as gw;

use super::instruments::save;
use super::{answer, Ctx, Output};
use crate::client::{request, Gateway};
use crate::config::{CorpusArgs, RandomWordsArgs, SentenceArgs};
use crate::error::Error;
use crate::json::to_line;
use crate::{picture, render};

/// The text of `--corpus FILE`, to count instead of the decoder's corpus.
fn corpus_text(path: Option<&std::path::Path>) -> Result<Option<String>, Error> {
    path.map(|path| {
        std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("`--corpus` {}: {e}", path.display())))
    })
    .transpose()
}

async fn count(
    gateway: &mut Gateway,
    ctx: Ctx,
    r: gw::CorpusRequest,
) -> Result<gw::CorpusResponse, Error> {
    Ok(gateway.corpus(request(r, ctx.timeout)).await?.into_inner())
}

pub async fn letters(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: CorpusArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let r = gw::CorpusRequest {
        text: corpus_text(args.corpus.as_deref())?,
        letter_frequencies: true,
        ..Default::default()
    };
    let resp = count(gateway, ctx, r).await?;
    answer(io, ctx, &resp, render::letters_table)?;
    save(&args.picture, io, |size| picture::letters(&resp, size))
}

pub async fn letter_pairs(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: CorpusArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let r = gw::CorpusRequest {
        text: corpus_text(args.corpus.as_deref())?,
        letter_pairs: true,
        ..Default::default()
    };
    let resp = count(gateway, ctx, r).await?;
    answer(io, ctx, &resp, render::letter_pairs_text)?;
    save(&args.picture, io, |size| picture::letter_pairs(&resp, size))
}

pub async fn random_words(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: RandomWordsArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let text = corpus_text(args.corpus.as_deref())?;
    for n in args.n {
        let r = gw::CorpusRequest {
            text: text.clone(),
            random_words_n: n,
            random_words: args.count,
            seed: args.seed,
            ..Default::default()
        };
        let resp = count(gateway, ctx, r).await?;
        if ctx.json {
            writeln!(io.out, "{}", to_line(&resp))?;
        } else {
            writeln!(io.out, "n = {n}: {}", resp.random_words.join(" "))?;
        }
    }
    Ok(())
}

pub async fn sentence(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: SentenceArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let r = gw::CorpusRequest {
        text: corpus_text(args.corpus.as_deref())?,
        sentence_n: args.n,
        sentence_start: args.start,
        sentence_words: args.words,
        seed: args.seed,
        ..Default::default()
    };
    let resp = count(gateway, ctx, r).await?;
    if ctx.json {
        writeln!(io.out, "{}", to_line(&resp))?;
    } else {
        writeln!(io.out, "{}", resp.sentence)?;
    }
    Ok(())
}

//! Each command: build the request, call the gateway, write the answer.

use std::io::{Read, Write};
use std::time::Duration;

use oneword_proto::gateway::v1 as gw;

use crate::client::{connect, request, Gateway};
use crate::config::{CancelArgs, Cli, Command, NextArgs, TokenizeArgs};
use crate::error::Error;
use crate::json::{to_line, Named};
use crate::render::{self, Style};

mod collections;
mod corpus;
mod generate;
mod instruments;
mod search;
mod sessions;

/// Where a command writes: stdout for the answer, stderr for what is about it.
pub struct Output<'a> {
    pub out: &'a mut (dyn Write + Send),
    pub err: &'a mut (dyn Write + Send),
    /// Styling for `out`.
    pub out_style: Style,
    /// Styling for `err`.
    pub err_style: Style,
}

impl Output<'_> {
    /// A line on stderr, dimmed, after everything on stdout so far.
    fn note(&mut self, line: &str) -> Result<(), Error> {
        self.out.flush()?;
        writeln!(self.err, "{}", self.err_style.dim(line))?;
        Ok(())
    }
}

/// Runs the command the flags name against the gateway they name.
pub async fn run(cli: Cli, io: &mut Output<'_>) -> Result<(), Error> {
    let connection = connect(&cli.gateway, cli.api_key.as_deref()).await?;
    let mut gateway = connection.gateway();
    let ctx = Ctx {
        json: cli.json,
        timeout: cli.timeout,
    };
    match cli.command {
        Command::Next(args) => next(&mut gateway, ctx, args, io).await,
        Command::Generate(args) => generate::run(&mut gateway, ctx, args, io).await,
        Command::Tokenize(args) => tokenize(&mut gateway, ctx, args, io).await,
        Command::Cancel(args) => cancel(&mut gateway, ctx, args, io).await,
        Command::Info => info(&mut gateway, ctx, io).await,
        Command::Compare(args) => instruments::compare(&mut gateway, ctx, args, io).await,
        Command::Branch(args) => sessions::branch(&mut gateway, ctx, args, io).await,
        Command::Session(args) => sessions::session(&mut gateway, ctx, args, io).await,
        Command::Ranks(args) => instruments::ranks(&mut gateway, ctx, args, io).await,
        Command::Score(args) => instruments::score(&mut gateway, ctx, args, io).await,
        Command::Lens(args) => instruments::lens(&mut gateway, ctx, args, io).await,
        Command::Attention(args) => instruments::attention(&mut gateway, ctx, args, io).await,
        Command::EmbeddingModule(args) => {
            instruments::embedding_module(&mut gateway, ctx, args, io).await
        }
        Command::Words(args) => instruments::words(&mut gateway, ctx, args, io).await,
        Command::Nearest(args) => instruments::nearest(&mut gateway, ctx, args, io).await,
        Command::Letters(args) => corpus::letters(&mut gateway, ctx, args, io).await,
        Command::LetterPairs(args) => corpus::letter_pairs(&mut gateway, ctx, args, io).await,
        Command::RandomWords(args) => corpus::random_words(&mut gateway, ctx, args, io).await,
        Command::Sentence(args) => corpus::sentence(&mut gateway, ctx, args, io).await,
        Command::Weights(args) => instruments::weights(&mut gateway, ctx, args, io).await,
        Command::Embed(args) => search::embed(&mut gateway, ctx, args, io).await,
        Command::Similarity(args) => search::similarity(&mut gateway, ctx, args, io).await,
        Command::Collection(args) => {
            collections::collection(&mut connection.collections(), ctx, args, io).await
        }
        Command::Upsert(args) => {
            collections::upsert(&mut connection.collections(), ctx, args, io).await
        }
        Command::Search(args) => {
            collections::search(&mut connection.collections(), ctx, args, io).await
        }
    }?;
    io.out.flush()?;
    Ok(())
}

#[derive(Clone, Copy)]
struct Ctx {
    json: bool,
    timeout: Option<Duration>,
}

/// Writes an answer: the message as JSON with `--json`, else the text `table` makes of it.
fn answer<M: Named>(
    io: &mut Output<'_>,
    ctx: Ctx,
    resp: &M,
    table: impl FnOnce(&M) -> String,
) -> Result<(), Error> {
    if ctx.json {
        writeln!(io.out, "{}", to_line(resp))?;
    } else {
        write!(io.out, "{}", table(resp))?;
    }
    Ok(())
}

/// The text argument, or stdin for "-" (less one trailing newline, which `echo` adds).
/// The prompt argument as the request's `prompt` and `prompt_token_ids`: text, or with `ids`
/// token ids separated by spaces or commas.
fn prompt_of(arg: String, ids: bool) -> Result<(String, Vec<u32>), Error> {
    let text = input(arg)?;
    if !ids {
        return Ok((text, Vec::new()));
    }
    let ids = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| Error::Usage(format!("--ids: {s:?} is not a token id")))
        })
        .collect::<Result<Vec<u32>, Error>>()?;
    Ok((String::new(), ids))
}

fn input(arg: String) -> Result<String, Error> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

async fn next(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: NextArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let (prompt, prompt_token_ids) = prompt_of(args.prompt, args.ids)?;
    let message = gw::NextTokensRequest {
        prompt,
        prompt_token_ids,
        top_n: args.top,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        full_row: args.full_row,
        model: args.model.unwrap_or_default(),
        session_id: args.session.unwrap_or_default(),
    };
    let resp = gateway
        .next_tokens(request(message, ctx.timeout))
        .await?
        .into_inner();
    if ctx.json {
        writeln!(io.out, "{}", to_line(&resp))?;
    } else {
        let label = render::shaping_label(args.temperature, args.top_k, args.top_p);
        write!(io.out, "{}", render::next_table(&resp, label.as_deref()))?;
    }
    Ok(())
}

async fn tokenize(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: TokenizeArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let message = gw::TokenizeRequest {
        text: input(args.text)?,
        allow_special: args.allow_special,
    };
    let resp = gateway
        .tokenize(request(message, ctx.timeout))
        .await?
        .into_inner();
    if ctx.json {
        writeln!(io.out, "{}", to_line(&resp))?;
    } else {
        let encoding = resp.encoding.unwrap_or_default();
        write!(io.out, "{}", render::tokenize_table(&encoding))?;
    }
    Ok(())
}

async fn cancel(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: CancelArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let message = gw::CancelRequest {
        request_id: args.request_id.clone(),
    };
    let resp = gateway
        .cancel(request(message, ctx.timeout))
        .await?
        .into_inner();
    if ctx.json {
        writeln!(io.out, "{}", to_line(&resp))?;
    } else {
        io.note(&format!("cancelled {}", args.request_id))?;
    }
    Ok(())
}

async fn info(gateway: &mut Gateway, ctx: Ctx, io: &mut Output<'_>) -> Result<(), Error> {
    let resp = gateway
        .info(request(gw::InfoRequest {}, ctx.timeout))
        .await?
        .into_inner();
    if ctx.json {
        writeln!(io.out, "{}", to_line(&resp))?;
    } else {
        write!(io.out, "{}", render::info(&resp))?;
    }
    Ok(())
}

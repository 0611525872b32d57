//! `oneword generate`: one completion printed as it streams, several printed whole as each
//! finishes, and a summary on stderr.

use oneword_proto::gateway::v1 as gw;

use super::{prompt_of, Ctx, Output};
use crate::client::{request, Gateway};
use crate::collect::{Collector, Completion};
use crate::config::GenerateArgs;
use crate::error::Error;
use crate::json::to_line;
use crate::render;

/// Sends the request, by the streaming RPC unless `--no-stream`, and prints the answer.
pub async fn run(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: GenerateArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let (prompt, prompt_token_ids) = prompt_of(args.prompt, args.ids)?;
    let single = args.n.unwrap_or(1) == 1;
    let message = request(
        gw::GenerateRequest {
            prompt: prompt.clone(),
            prompt_token_ids,
            max_new_tokens: args.max_tokens,
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
            stop: args.stop,
            n: args.n,
            logprobs: args.logprobs,
            ignore_eos: args.ignore_eos,
            // A repeated id: the last one given wins.
            logit_bias: args.logit_bias.into_iter().collect(),
            model: args.model.unwrap_or_default(),
            request_id: args.request_id.unwrap_or_default(),
            stop_token_ids: args.stop_token_id,
            min_p: args.min_p,
            typical_p: args.typical_p,
            min_new_tokens: args.min_tokens,
            repetition_penalty: args.repetition_penalty,
            frequency_penalty: args.frequency_penalty,
            presence_penalty: args.presence_penalty,
            session_id: args.session.unwrap_or_default(),
            append_to_session: args.append,
            include_stop_str_in_output: args.include_stop,
        },
        ctx.timeout,
    );
    let printer = Printer {
        single,
        echoed: if args.echo && single { &prompt } else { "" },
    };

    if args.no_stream {
        let resp = gateway.generate(message).await?.into_inner();
        if ctx.json {
            writeln!(io.out, "{}", to_line(&resp))?;
            return Ok(());
        }
        printer.start(io)?;
        let completions: Vec<Completion> =
            resp.completions.into_iter().map(Completion::from).collect();
        for c in &completions {
            printer.text(&c.text, io)?;
            printer.finish(c, io)?;
        }
        let all: Vec<&Completion> = completions.iter().collect();
        let timings = resp.timings.as_ref();
        return printer.summary(&all, Some(resp.seed), timings, &resp.request_id, io);
    }

    let mut stream = gateway.generate_stream(message).await?.into_inner();
    if ctx.json {
        while let Some(chunk) = stream.message().await? {
            writeln!(io.out, "{}", to_line(&chunk))?;
            io.out.flush()?;
        }
        return Ok(());
    }
    printer.start(io)?;
    let mut collector = Collector::default();
    while let Some(chunk) = stream.message().await? {
        printer.text(&chunk.text, io)?;
        let c = collector.push(chunk);
        if c.finished() {
            printer.finish(c, io)?;
        }
    }
    // A stream that ended without some completion's last chunk: show what came.
    for c in collector.completions().filter(|c| !c.finished()) {
        printer.finish(c, io)?;
    }
    let all: Vec<&Completion> = collector.completions().collect();
    let timings = collector.timings();
    let request_id = &collector.request_id;
    printer.summary(&all, collector.seed, timings.as_ref(), request_id, io)
}

/// How completions reach the terminal: the text of a single one as it arrives, several whole
/// as `[i]` blocks when each finishes.
struct Printer<'a> {
    single: bool,
    /// What goes before the first completion's text on its line (`--echo`).
    echoed: &'a str,
}

impl Printer<'_> {
    /// Before any text: the prompt, when echoed.
    fn start(&self, io: &mut Output<'_>) -> Result<(), Error> {
        write!(io.out, "{}", io.out_style.bold(self.echoed))?;
        io.out.flush()?;
        Ok(())
    }

    /// Text as it arrives: written now for a single completion, kept for its block otherwise.
    fn text(&self, text: &str, io: &mut Output<'_>) -> Result<(), Error> {
        if self.single {
            write!(io.out, "{text}")?;
            io.out.flush()?;
        }
        Ok(())
    }

    /// Writes the end of a completion: the rest of its output (all of it when there are
    /// several), its token table, and (for one of several) its summary line.
    fn finish(&self, c: &Completion, io: &mut Output<'_>) -> Result<(), Error> {
        if self.single {
            // The (echoed prompt and) text have been written already; end the line so that what
            // follows starts on its own.
            let last = c.text.chars().last().or_else(|| self.echoed.chars().last());
            if last.is_some_and(|ch| ch != '\n') {
                writeln!(io.out)?;
            }
        } else {
            write!(io.out, "{}", render::completion_block(c.index, &c.text))?;
        }
        if let Some(details) = &c.details {
            write!(io.out, "\n{}\n", render::details_table(details))?;
        }
        if !self.single {
            io.note(&format!("[{}] {}", c.index, render::completion_summary(c)))?;
        }
        Ok(())
    }

    /// The closing line on stderr.
    fn summary(
        &self,
        completions: &[&Completion],
        seed: Option<u64>,
        timings: Option<&gw::Timings>,
        request_id: &str,
        io: &mut Output<'_>,
    ) -> Result<(), Error> {
        let line = render::generate_summary(self.single, completions, seed, timings);
        match request_id {
            "" => io.note(&line),
            id => io.note(&format!("{line} · request {id}")),
        }
    }
}

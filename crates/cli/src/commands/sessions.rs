//! `oneword branch` and `oneword session`: client sessions, a prompt prefilled once and kept in
//! a decoder, continued and forked without prefilling it again.

use oneword_proto::gateway::v1 as gw;

use super::{input, prompt_of, Ctx, Output};
use crate::client::{request, Gateway};
use crate::config::{BranchArgs, SessionAction, SessionArgs};
use crate::error::Error;
use crate::json::to_line;
use crate::render;

/// Prefills the prompt once as a session, continues it at each temperature (one greedy branch
/// at 0, `samples` at each other, all with one seed), prints the branches by temperature, and
/// releases the session unless `--keep`.
pub async fn branch(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: BranchArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    if args.branches.temperatures.is_empty() {
        return Err(Error::Usage("--temperatures: give at least one".into()));
    }
    let created = gw::CreateSessionRequest {
        prompt: input(args.prompt.clone())?,
        ..Default::default()
    };
    let session = gateway
        .create_session(request(created, ctx.timeout))
        .await?
        .into_inner()
        .session
        .unwrap_or_default();
    let branches = branches(gateway, &ctx, &args, &session.session_id).await;
    if !args.keep {
        let release = gw::ReleaseSessionRequest {
            session_id: session.session_id.clone(),
        };
        // Past its TTL the gateway drops it anyway.
        let _ = gateway.release_session(request(release, ctx.timeout)).await;
    }
    let compared = branches?;
    if ctx.json {
        writeln!(io.out, "{}", to_line(&session))?;
        writeln!(io.out, "{}", to_line(&compared))?;
        return Ok(());
    }
    write!(io.out, "{}", render::compare_text(&compared))?;
    let branches: usize = compared.groups.iter().map(|g| g.completions.len()).sum();
    let kept = if args.keep {
        format!("; kept as {}", session.session_id)
    } else {
        String::new()
    };
    io.note(&format!(
        "{branches} branches from one prefill of {} tokens{kept}; seed {}",
        session.token_ids.len(),
        compared.seed
    ))
}

/// The branches of session `id`, by temperature, as Compare answers them.
async fn branches(
    gateway: &mut Gateway,
    ctx: &Ctx,
    args: &BranchArgs,
    id: &str,
) -> Result<gw::CompareResponse, Error> {
    let mut compared = gw::CompareResponse {
        seed: args.branches.seed.unwrap_or_default(),
        ..Default::default()
    };
    let mut seed = args.branches.seed;
    for &temperature in &args.branches.temperatures {
        let r = gw::GenerateRequest {
            session_id: id.to_string(),
            temperature: Some(temperature),
            n: Some(if temperature == 0.0 {
                1
            } else {
                args.branches.samples
            }),
            seed,
            max_new_tokens: args.branches.max_tokens,
            ..Default::default()
        };
        let answer = gateway
            .generate(request(r, ctx.timeout))
            .await?
            .into_inner();
        // The first branch's seed (the gateway's, when none was given) for all of them.
        seed = Some(answer.seed);
        compared.seed = answer.seed;
        compared.groups.push(gw::TemperatureGroup {
            temperature,
            completions: answer.completions,
        });
    }
    Ok(compared)
}

/// Creates, forks or releases a session.
pub async fn session(
    gateway: &mut Gateway,
    ctx: Ctx,
    args: SessionArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let session = match args.action {
        SessionAction::Create { prompt, ids, model } => {
            let (prompt, prompt_token_ids) = prompt_of(prompt, ids)?;
            let r = gw::CreateSessionRequest {
                prompt,
                prompt_token_ids,
                model: model.unwrap_or_default(),
            };
            let answer = gateway.create_session(request(r, ctx.timeout)).await?;
            answer.into_inner().session.unwrap_or_default()
        }
        SessionAction::Fork { session_id } => {
            let r = gw::ForkSessionRequest { session_id };
            let answer = gateway.fork_session(request(r, ctx.timeout)).await?;
            answer.into_inner().session.unwrap_or_default()
        }
        SessionAction::Release { session_id } => {
            let r = gw::ReleaseSessionRequest {
                session_id: session_id.clone(),
            };
            let answer = gateway.release_session(request(r, ctx.timeout)).await?;
            if ctx.json {
                writeln!(io.out, "{}", to_line(&answer.into_inner()))?;
                return Ok(());
            }
            return io.note(&format!("released {session_id}"));
        }
    };
    if ctx.json {
        writeln!(io.out, "{}", to_line(&session))?;
        return Ok(());
    }
    writeln!(io.out, "{}", session.session_id)?;
    io.note(&format!(
        "{} tokens kept; dropped after {} s unused; continue it with --session {}",
        session.token_ids.len(),
        session.ttl_seconds,
        session.session_id
    ))
}

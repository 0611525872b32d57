//! Client sessions: a prompt prefilled once and kept in a decoder for a client, which later
//! calls continue and fork without prefilling it again (the essay's several continuations of
//! one prompt, an agent's or an evaluation's shared prefix).
//!
//! A kept session is, like a generation's sessions, a cache and not the truth: the gateway holds
//! its tokens, and a decoder session holds all of them but the last, which whoever continues the
//! session feeds to get its own pick (as `n` completions share a prompt). When that decoder
//! session is gone (its replica failed, or the decoder's TTL dropped it) the next use prefills it
//! again on a replica from the tokens.
//!
//! Sessions live on the gateway replica that created them, for as long as they are used: one
//! idle for the TTL is dropped. The table is capped in all and per client (the peer's address),
//! and each decoder session counts against its decoder's KV budget like any other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;
use oneword_runtime::deadline::Deadline;
use tonic::Code;

use crate::convert::{Given, Prompt};
use crate::downstream::{Backend, Decoder, Downstream, Inputs, Sessions};
use crate::Error;

/// How many times one use re-places a session whose decoder session is gone.
const MAX_PLACEMENTS: usize = 3;

/// The caps and the TTL.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max: usize,
    pub per_client: usize,
    pub ttl: Duration,
}

/// The kept sessions by handle.
pub struct ClientSessions {
    table: Mutex<HashMap<String, Arc<Kept>>>,
    pub limits: Limits,
}

/// One client session.
pub struct Kept {
    pub id: String,
    /// Who created it, for the per-client cap.
    owner: String,
    pub backend: Backend,
    state: tokio::sync::Mutex<State>,
    last_used: Mutex<Instant>,
}

struct State {
    tokens: Vec<u32>,
    /// Where a decoder holds `tokens[..len - 1]`; `None`: nowhere (yet, or any longer).
    placed: Option<Placed>,
}

/// A decoder session holding a kept session's tokens but the last.
pub struct Placed {
    decoder: Decoder,
    name: String,
    /// Releases `name` when the placement goes (replaced, expired, released).
    _guard: Sessions,
}

/// Decoder sessions copied from a client session: where they live, how many positions they
/// hold, and the guard that releases them unless the caller keeps them.
pub struct Forked {
    pub decoder: Decoder,
    pub held: usize,
    pub sessions: Sessions,
}

/// A session entered in the table for a call that has not finished: if the call fails or is
/// dropped (its deadline, its client gone), the entry goes, so it holds no slot of a cap.
struct Entered<'a> {
    sessions: &'a ClientSessions,
    id: String,
    done: bool,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.sessions.table().remove(&self.id);
        }
    }
}

impl Placed {
    /// Takes over decoder session `name` on `decoder` (it is released when this goes).
    pub fn new(decoder: Decoder, name: String) -> Self {
        let guard = Sessions::new(&decoder, vec![name.clone()]);
        Placed {
            decoder,
            name,
            _guard: guard,
        }
    }
}

impl ClientSessions {
    pub fn new(limits: Limits) -> Self {
        ClientSessions {
            table: Mutex::new(HashMap::new()),
            limits,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Kept>>> {
        self.table
            .lock()
            .expect("the client sessions' table is never poisoned")
    }

    /// A new session of `owner` holding `tokens`, prefilled now. RESOURCE_EXHAUSTED past a cap.
    pub async fn create(
        &self,
        owner: String,
        backend: Backend,
        tokens: Vec<u32>,
        down: &Downstream,
        deadline: &Deadline,
    ) -> Result<Arc<Kept>, Error> {
        let kept = self.insert(owner, backend, tokens)?;
        let mut entered = self.entered(&kept);
        {
            let mut state = kept.state.lock().await;
            kept.ensure_placed(&mut state, down, &[], deadline).await?;
        }
        entered.done = true;
        Ok(kept)
    }

    fn entered(&self, kept: &Kept) -> Entered<'_> {
        Entered {
            sessions: self,
            id: kept.id.clone(),
            done: false,
        }
    }

    /// A copy of `source` for `owner`, forked in the decoder.
    pub async fn fork(
        &self,
        source: &Kept,
        owner: String,
        down: &Downstream,
        deadline: &Deadline,
    ) -> Result<Arc<Kept>, Error> {
        let mut state = source.state.lock().await;
        let copy = self.insert(owner, source.backend.clone(), state.tokens.clone())?;
        let mut entered = self.entered(&copy);
        let name = copy.fresh_name();
        let forked = source
            .fork_locked(&mut state, down, vec![name.clone()], deadline)
            .await?;
        if let Some(mut forked) = forked {
            let placed = Placed::new(forked.decoder, name.clone());
            forked.sessions.keep(&[name]);
            copy.state.lock().await.placed = Some(placed);
        }
        entered.done = true;
        Ok(copy)
    }

    /// Enters a session, within the caps (after dropping the expired).
    fn insert(
        &self,
        owner: String,
        backend: Backend,
        tokens: Vec<u32>,
    ) -> Result<Arc<Kept>, Error> {
        let mut table = self.table();
        self.expire_in(&mut table);
        let Limits {
            max, per_client, ..
        } = self.limits;
        let owned = table.values().filter(|k| k.owner == owner).count();
        if table.len() >= max || owned >= per_client {
            let (held, limit, flag) = if owned >= per_client {
                (owned, per_client, "--max-sessions-per-client")
            } else {
                (table.len(), max, "--max-sessions")
            };
            return Err(Error::Overloaded(
                format!(
                    "{held} client sessions are held (the limit is {limit}, the gateway's {flag}); release one (ReleaseSession) or wait for one to expire"
                ),
                self.limits.ttl.min(Duration::from_secs(30)),
            ));
        }
        let kept = Arc::new(Kept {
            id: format!("sess-{}", uuid::Uuid::new_v4().simple()),
            owner,
            backend,
            state: tokio::sync::Mutex::new(State {
                tokens,
                placed: None,
            }),
            last_used: Mutex::new(Instant::now()),
        });
        table.insert(kept.id.clone(), kept.clone());
        Ok(kept)
    }

    /// The session with handle `id`, used now. NOT_FOUND naming `field` when there is none.
    pub fn get(&self, field: &str, id: &str) -> Result<Arc<Kept>, Error> {
        let mut table = self.table();
        self.expire_in(&mut table);
        let kept = table.get(id).cloned().ok_or_else(|| missing(field, id))?;
        *kept.last_used.lock().expect("never poisoned") = Instant::now();
        Ok(kept)
    }

    /// Drops the session with handle `id` (its decoder session is released).
    pub fn release(&self, id: &str) -> Result<(), Error> {
        match self.table().remove(id) {
            Some(_) => Ok(()),
            None => Err(missing("session_id", id)),
        }
    }

    /// Drops the sessions idle for the TTL.
    pub fn expire(&self) {
        let mut table = self.table();
        self.expire_in(&mut table);
    }

    fn expire_in(&self, table: &mut HashMap<String, Arc<Kept>>) {
        let ttl = self.limits.ttl;
        table.retain(|_, k| k.last_used.lock().expect("never poisoned").elapsed() < ttl);
    }

    /// The wire form of `kept`.
    pub async fn describe(&self, kept: &Kept) -> pb::Session {
        pb::Session {
            session_id: kept.id.clone(),
            token_ids: kept.tokens().await,
            ttl_seconds: self.limits.ttl.as_secs() as u32,
            model: kept.backend.model_field(),
        }
    }
}

fn missing(field: &str, id: &str) -> Error {
    Error::NotFound(format!(
        "no client session has `{field}` {id:?} (it may have been released or idle past its TTL)"
    ))
}

/// Whether `error` is the decoder saying the session is not there (its TTL dropped it).
fn gone(error: &Error) -> bool {
    matches!(error, Error::Downstream(_, status) if status.code() == Code::NotFound)
}

impl Kept {
    pub async fn tokens(&self) -> Vec<u32> {
        self.state.lock().await.tokens.clone()
    }

    /// A name for a decoder session of this one, never used before.
    fn fresh_name(&self) -> String {
        format!("{}/{:016x}", self.id, uuid::Uuid::new_v4().as_u64_pair().0)
    }

    /// Copies the session into decoder sessions named `targets`, which then hold its tokens but
    /// the last, provided its tokens are still `expected` (the ones the caller read and built
    /// on: an append may have moved it on since). `None` when they are not, or when the session
    /// is a single token (nothing to copy): the caller prefills its own tokens then.
    pub async fn fork_into(
        &self,
        down: &Downstream,
        targets: Vec<String>,
        expected: &[u32],
        deadline: &Deadline,
    ) -> Result<Option<Forked>, Error> {
        let mut state = self.state.lock().await;
        if state.tokens != expected {
            return Ok(None);
        }
        self.fork_locked(&mut state, down, targets, deadline).await
    }

    async fn fork_locked(
        &self,
        state: &mut State,
        down: &Downstream,
        targets: Vec<String>,
        deadline: &Deadline,
    ) -> Result<Option<Forked>, Error> {
        let mut failed: Vec<SocketAddr> = Vec::new();
        for _ in 0..MAX_PLACEMENTS {
            if !self.ensure_placed(state, down, &failed, deadline).await? {
                return Ok(None);
            }
            let placed = state.placed.as_ref().expect("just placed");
            let decoder = placed.decoder.clone();
            // Guarded before the call: a caller dropped mid-fork leaves nothing behind.
            let mut sessions = Sessions::new(&decoder, targets.clone());
            // The session's past completions are prompt to whatever continues it.
            let fork = decoder.fork(&placed.name, targets.clone(), true, deadline);
            match fork.await {
                Ok(()) => {
                    let held = state.tokens.len() - 1;
                    return Ok(Some(Forked {
                        decoder,
                        held,
                        sessions,
                    }));
                }
                Err(e) if gone(&e) || decoder.failed_by(&e) => {
                    tracing::warn!(session = %self.id, error = %e, "a client session's decoder session is gone; prefilling it again");
                    if decoder.failed_by(&e) {
                        failed.push(decoder.address());
                    } else {
                        // Nothing was made; a release would bar the names from the next try.
                        sessions.keep(&targets);
                    }
                    state.placed = None;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Downstream(
            self.backend.service(),
            tonic::Status::unavailable(format!(
                "client session {} could not be placed on a replica in {MAX_PLACEMENTS} tries",
                self.id
            )),
        ))
    }

    /// Prefills the tokens but the last on a replica not in `excluded`, unless a decoder holds
    /// them already. Returns whether one does (a single token leaves nothing to hold).
    async fn ensure_placed(
        &self,
        state: &mut State,
        down: &Downstream,
        excluded: &[SocketAddr],
        deadline: &Deadline,
    ) -> Result<bool, Error> {
        let held = state.tokens.len().saturating_sub(1);
        if held == 0 {
            return Ok(false);
        }
        if state.placed.is_some() {
            return Ok(true);
        }
        let decoder = down.decoder_excluding(&self.backend, excluded).await?;
        let placed = Placed::new(decoder.clone(), self.fresh_name());
        let ids = state.tokens[..held].to_vec();
        let positions = (0..held as u32).collect();
        let inputs = Inputs::of(down, &self.backend, ids.clone(), positions, deadline).await?;
        let prefill = dec::SessionStep {
            session_id: placed.name.clone(),
            create: true,
            start_position: 0,
            input: inputs.rows(0, held),
            sampling: None,
            release_after: false,
            model: self.backend.model_field(),
            // Counted for the penalties of whatever continues it.
            history: Some(dec::History {
                prompt_ids: ids,
                generated_ids: Vec::new(),
            }),
            judge_ids: Vec::new(),
        };
        decoder
            .step_watched(vec![prefill], deadline, down.stall)
            .await?;
        state.placed = Some(placed);
        Ok(true)
    }

    /// Makes `tokens` the session's, held but the last by `placed` (a generation's decoder
    /// session, which `append_to_session` hands over); the old one is released.
    pub async fn adopt(&self, tokens: Vec<u32>, placed: Placed) {
        let mut state = self.state.lock().await;
        state.tokens = tokens;
        state.placed = Some(placed);
    }
}

/// The tokens a request starts from, and how many of them are its session's: the session's
/// (when it continues one), then its prompt's, which may be empty after a session.
pub async fn continued(
    base: Option<&Kept>,
    prompt: &Prompt,
    down: &Downstream,
    vocab_size: usize,
    deadline: &Deadline,
) -> Result<(Vec<u32>, usize), Error> {
    let Some(base) = base else {
        return Ok((down.prompt_ids(prompt, vocab_size, deadline).await?, 0));
    };
    let mut tokens = base.tokens().await;
    let from_session = tokens.len();
    if !matches!(&prompt.given, Given::Ids(ids) if ids.is_empty()) {
        tokens.extend(down.prompt_ids(prompt, vocab_size, deadline).await?);
    }
    Ok((tokens, from_session))
}

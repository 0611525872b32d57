//! The sessions outside the passes: what they hold, release (and the ids it remembers), forks
//! and the TTL.

use std::collections::HashSet;

use oneword_runtime::SessionError;

use super::{Session, Waiting, Worker};
use crate::engine::job::Usage;
use crate::Error;

impl Worker {
    pub(super) fn usage(&self) -> Usage {
        Usage {
            sessions: self.sessions.len(),
            cached_tokens: self.sessions.values().map(|s| s.cache.len()).sum(),
            cached_bytes: self.sessions.values().map(|s| s.cache.bytes()).sum(),
            running: self.running.len(),
            waiting: self.waiting.len(),
            passes: self.passes,
            rows: self.rows,
        }
    }

    /// Positions held by every cache plus the growth promised to running requests.
    pub(super) fn committed_tokens(&self) -> usize {
        let held: usize = self
            .sessions
            .values()
            .map(|s| s.cache.capacity_after(0))
            .sum();
        let promised: usize = self
            .running
            .iter()
            .flat_map(|r| &r.parts)
            .filter_map(|p| {
                let cache = &self.sessions.get(&p.input.session_id)?.cache;
                Some(cache.capacity_after(p.remaining()) - cache.capacity_after(0))
            })
            .sum();
        held + promised
    }

    /// Drops the named sessions and returns how many existed. A busy session goes too: the
    /// request running it notices and is undone. A waiting request naming one is refused, and
    /// an id no session has yet is remembered against a call creating it that is still on its
    /// way (see [`oneword_runtime::Released`]).
    pub(super) fn release(&mut self, ids: &[String]) -> usize {
        let now = self.clock.now();
        let mut existed = 0;
        for id in ids {
            self.expected.remove(id);
            if self.sessions.remove(id).is_some() {
                existed += 1;
            } else {
                self.released.note(id, now);
            }
        }
        let names_released = |w: &Waiting| {
            w.inputs
                .iter()
                .map(|i| &i.session_id)
                .find(|id| ids.contains(id))
                .cloned()
        };
        let (refused, kept): (Vec<_>, Vec<_>) = self
            .waiting
            .drain(..)
            .partition(|w| names_released(w).is_some());
        self.waiting = kept.into();
        for w in refused {
            let id = names_released(&w).expect("partitioned on it");
            let _ = w
                .reply
                .send(Err(Error::Session(SessionError::NotFound(id))));
        }
        existed
    }

    /// The first of `ids` released before it existed, if any: a call creating it is stale.
    pub(super) fn first_released<'a>(
        &mut self,
        mut ids: impl Iterator<Item = &'a String>,
    ) -> Option<String> {
        let now = self.clock.now();
        ids.find(|id| self.released.take(id, now)).cloned()
    }

    pub(super) fn expire_idle(&mut self) {
        let (ttl, now) = (self.limits.session_ttl, self.clock.now());
        let before = self.sessions.len();
        self.sessions
            .retain(|_, s| s.busy || now.saturating_duration_since(s.last_used) < ttl);
        let expired = before - self.sessions.len();
        if expired > 0 {
            tracing::info!(expired, "dropped idle sessions past their TTL");
        }
    }

    pub(super) fn fork(
        &mut self,
        source: &str,
        targets: Vec<String>,
        seen_as_prompt: bool,
    ) -> Result<(), Error> {
        let (cache, shaping, seen) = match self.sessions.get_mut(source) {
            Some(session) if session.busy => {
                return Err(Error::Session(SessionError::Busy(source.to_string())))
            }
            Some(session) => {
                session.last_used = self.clock.now();
                let seen = match seen_as_prompt {
                    true => session.seen.as_prompt(),
                    false => session.seen.clone(),
                };
                (session.cache.clone(), session.shaping.clone(), seen)
            }
            None => return Err(Error::Session(SessionError::NotFound(source.to_string()))),
        };
        if let Some(stale) = self.first_released(targets.iter()) {
            return Err(Error::Session(SessionError::NotFound(stale)));
        }
        let mut unique = HashSet::new();
        for target in &targets {
            if self.sessions.contains_key(target) || !unique.insert(target) {
                return Err(Error::Session(SessionError::Exists(target.clone())));
            }
        }
        let (budget, max_sessions) = (self.limits.kv_budget_tokens, self.limits.max_sessions);
        let tokens = targets.len() * cache.capacity_after(0);
        let committed = self.committed_tokens();
        // The source and its copies alone over the limits: no amount of waiting helps.
        let never = (targets.len() + 1) * cache.capacity_after(0) > budget
            || targets.len() + 1 > max_sessions;
        if committed + tokens > budget || self.sessions.len() + targets.len() > max_sessions {
            let refuse = if never {
                Error::ExceedsCapacity
            } else {
                Error::Overloaded
            };
            return Err(refuse(format!(
                "{} forks need {tokens} KV-cache positions and {} sessions; the decoder holds {committed} of {budget} positions and {} of {max_sessions} sessions",
                targets.len(),
                targets.len(),
                self.sessions.len(),
            )));
        }
        let now = self.clock.now();
        for target in targets {
            self.sessions.insert(
                target,
                Session {
                    cache: cache.clone(),
                    shaping: shaping.clone(),
                    seen: seen.clone(),
                    last_used: now,
                    busy: false,
                },
            );
        }
        Ok(())
    }
}

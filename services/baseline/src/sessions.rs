//! The n-gram sessions: each is its model and the token ids so far (no KV cache, no forward
//! pass). A step is a transaction in two halves, so that no lock is held while a row is
//! computed: [`Sessions::begin`] checks every step and marks its sessions busy, the caller
//! computes, and [`Sessions::finish`] writes the new ids or undoes the step. Time comes in as
//! `now`, so the TTL is tested without waiting for a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use oneword_runtime::{Released, SessionError};
use oneword_sampling::{History, Sampling, Seen, SessionShaping};

use crate::models::ModelName;
use crate::Error;

/// One session's step: new token ids, and whether the session goes after it.
#[derive(Clone, Debug)]
pub struct StepIds {
    pub session_id: String,
    /// The model, when the step creates the session.
    pub create: Option<ModelName>,
    pub start_position: usize,
    pub token_ids: Vec<u32>,
    pub release_after: bool,
    /// The ids as prompt and generated ones, for the penalties; `None`: not counted.
    pub history: Option<History>,
}

/// What [`Sessions::begin`] hands the computation for one step.
#[derive(Debug)]
pub struct Input {
    pub model: ModelName,
    /// The ids so far and the new ones.
    pub ids: Vec<u32>,
    /// The penalties' counts after the step.
    pub seen: Seen,
}

struct Session {
    model: ModelName,
    ids: Vec<u32>,
    /// The shaping its steps use when they send none.
    shaping: SessionShaping,
    /// The tokens its steps' histories named, for the penalties.
    seen: Seen,
    last_used: Instant,
    /// In a step being computed: not to be stepped, forked or expired by anyone else.
    busy: bool,
}

/// Limits the store enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_sessions: usize,
    pub ttl: Duration,
    /// Most token ids one session may hold.
    pub context: usize,
}

/// See the module documentation.
pub struct Sessions {
    sessions: HashMap<String, Session>,
    /// Ids released before a session had them: a call creating one is stale.
    released: Released,
    limits: Limits,
}

impl Sessions {
    pub fn new(limits: Limits) -> Self {
        Sessions {
            sessions: HashMap::new(),
            released: Released::default(),
            limits,
        }
    }

    /// Drops idle sessions past their TTL.
    fn expire(&mut self, now: Instant) {
        let ttl = self.limits.ttl;
        self.sessions
            .retain(|_, s| s.busy || now.saturating_duration_since(s.last_used) < ttl);
    }

    /// Sessions held at `now`.
    pub fn len(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.sessions.len()
    }

    /// Checks every step against the sessions as they are and marks them busy; returns each
    /// step's input. On an error nothing has changed.
    pub fn begin(&mut self, steps: &[StepIds], now: Instant) -> Result<Vec<Input>, Error> {
        self.expire(now);
        let mut creating = 0;
        for (i, step) in steps.iter().enumerate() {
            let id = &step.session_id;
            if steps[..i].iter().any(|s| &s.session_id == id) {
                return Err(Error::invalid(
                    "steps",
                    format!("session `{id}` appears twice in one step"),
                ));
            }
            let length = match (step.create, self.sessions.get(id)) {
                (Some(_), Some(_)) => return Err(Error::Session(SessionError::Exists(id.clone()))),
                (Some(_), None) if self.released.take(id, now) => {
                    return Err(Error::Session(SessionError::NotFound(id.clone())))
                }
                (Some(_), None) => {
                    creating += 1;
                    0
                }
                (None, Some(s)) if s.busy => {
                    return Err(Error::Session(SessionError::Busy(id.clone())))
                }
                (None, Some(s)) => s.ids.len(),
                (None, None) => return Err(Error::Session(SessionError::NotFound(id.clone()))),
            };
            if step.start_position != length {
                return Err(Error::Session(SessionError::PositionMismatch {
                    id: id.clone(),
                    length,
                    start: step.start_position,
                }));
            }
            let context = self.limits.context;
            if length + step.token_ids.len() > context {
                let f = format!("steps[{i}].token_ids");
                return Err(Error::invalid(
                    &f,
                    format!(
                        "session `{id}` holds {length} tokens; {} more exceed the n-gram context of {context}",
                        step.token_ids.len()
                    ),
                ));
            }
        }
        let max = self.limits.max_sessions;
        if self.sessions.len() + creating > max {
            return Err(Error::Overloaded(format!(
                "the baseline holds {} n-gram sessions and this step creates {creating}; its limit is {max}",
                self.sessions.len()
            )));
        }
        Ok(steps
            .iter()
            .map(|step| {
                let session = self
                    .sessions
                    .entry(step.session_id.clone())
                    .or_insert_with(|| Session {
                        model: step
                            .create
                            .expect("checked above: a new session is created"),
                        ids: Vec::new(),
                        shaping: SessionShaping::default(),
                        seen: Seen::default(),
                        last_used: now,
                        busy: false,
                    });
                session.busy = true;
                let mut ids = session.ids.clone();
                ids.extend(&step.token_ids);
                let mut seen = session.seen.clone();
                if let Some(history) = &step.history {
                    seen.add(history);
                }
                Input {
                    model: session.model,
                    ids,
                    seen,
                }
            })
            .collect())
    }

    /// Ends what [`Sessions::begin`] started: with `inputs` (each step's input) the sessions
    /// take their new ids and counts, or go when released after the step; with `None` (the
    /// computation failed) every session is as it was before. A session released while its
    /// step ran makes the whole step undone and NOT_FOUND.
    pub fn finish(
        &mut self,
        steps: &[StepIds],
        inputs: Option<Vec<Input>>,
        now: Instant,
    ) -> Result<(), Error> {
        let lost = steps
            .iter()
            .find(|s| !self.sessions.contains_key(&s.session_id));
        let inputs = match (inputs, lost) {
            (Some(inputs), None) => inputs,
            (_, lost) => {
                for step in steps {
                    if step.create.is_some() {
                        self.sessions.remove(&step.session_id);
                    } else if let Some(session) = self.sessions.get_mut(&step.session_id) {
                        session.busy = false;
                    }
                }
                return match lost {
                    Some(step) => Err(Error::Session(SessionError::NotFound(
                        step.session_id.clone(),
                    ))),
                    None => Ok(()),
                };
            }
        };
        for (step, input) in steps.iter().zip(inputs) {
            if step.release_after {
                self.sessions.remove(&step.session_id);
            } else if let Some(session) = self.sessions.get_mut(&step.session_id) {
                session.ids = input.ids;
                session.seen = input.seen;
                session.busy = false;
                session.last_used = now;
            }
        }
        Ok(())
    }

    /// Copies `source` into each of `targets` (counting every token it has seen as prompt, for
    /// the penalties, when `seen_as_prompt`).
    pub fn fork(
        &mut self,
        source: &str,
        targets: &[String],
        seen_as_prompt: bool,
        now: Instant,
    ) -> Result<(), Error> {
        self.expire(now);
        let (model, ids, shaping, seen) = match self.sessions.get_mut(source) {
            None => return Err(Error::Session(SessionError::NotFound(source.to_string()))),
            Some(s) if s.busy => {
                return Err(Error::Session(SessionError::Busy(source.to_string())))
            }
            Some(s) => {
                s.last_used = now;
                let seen = match seen_as_prompt {
                    true => s.seen.as_prompt(),
                    false => s.seen.clone(),
                };
                (s.model, s.ids.clone(), s.shaping.clone(), seen)
            }
        };
        if let Some(stale) = targets.iter().find(|t| self.released.take(t, now)) {
            return Err(Error::Session(SessionError::NotFound(stale.clone())));
        }
        for (i, target) in targets.iter().enumerate() {
            if self.sessions.contains_key(target) || targets[..i].contains(target) {
                return Err(Error::Session(SessionError::Exists(target.clone())));
            }
        }
        let max = self.limits.max_sessions;
        if self.sessions.len() + targets.len() > max {
            return Err(Error::Overloaded(format!(
                "{} forks would exceed the baseline's {max} sessions ({} held)",
                targets.len(),
                self.sessions.len()
            )));
        }
        for target in targets {
            let copy = Session {
                model,
                ids: ids.clone(),
                shaping: shaping.clone(),
                seen: seen.clone(),
                last_used: now,
                busy: false,
            };
            self.sessions.insert(target.clone(), copy);
        }
        Ok(())
    }

    /// Settles each step's sampling against its session's kept shaping (see
    /// [`SessionShaping`]); the sessions were checked by [`Sessions::begin`].
    pub fn settle(&mut self, steps: &[StepIds], samplings: &mut [Option<Sampling>]) {
        for (step, sampling) in steps.iter().zip(samplings) {
            if let (Some(session), Some(sampling)) =
                (self.sessions.get_mut(&step.session_id), sampling)
            {
                session.shaping.settle(sampling);
            }
        }
    }

    /// Drops the named sessions; returns how many existed. A busy one goes too: its step
    /// notices when it finishes and is undone. An id no session has yet is remembered against a
    /// call creating it that is still on its way ([`Released`]).
    pub fn release(&mut self, ids: &[String], now: Instant) -> usize {
        let mut existed = 0;
        for id in ids {
            if self.sessions.remove(id).is_some() {
                existed += 1;
            } else {
                self.released.note(id, now);
            }
        }
        existed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LETTERS_2: ModelName = ModelName {
        unit: crate::models::Unit::Letters,
        n: 2,
    };

    fn store() -> Sessions {
        Sessions::new(Limits {
            max_sessions: 3,
            ttl: Duration::from_secs(10),
            context: 8,
        })
    }

    fn step(id: &str, create: bool, start: usize, ids: &[u32]) -> StepIds {
        StepIds {
            session_id: id.into(),
            create: create.then_some(LETTERS_2),
            start_position: start,
            token_ids: ids.to_vec(),
            release_after: false,
            history: None,
        }
    }

    /// Runs one whole step (begin, then finish with its inputs); returns each step's ids.
    fn run(s: &mut Sessions, steps: &[StepIds], now: Instant) -> Result<Vec<Vec<u32>>, Error> {
        let inputs = s.begin(steps, now)?;
        let ids = inputs.iter().map(|i| i.ids.clone()).collect();
        s.finish(steps, Some(inputs), now)?;
        Ok(ids)
    }

    #[test]
    fn a_session_grows_by_its_steps_from_its_length() {
        let (mut s, t0) = (store(), Instant::now());
        assert_eq!(
            run(&mut s, &[step("a", true, 0, &[1, 2])], t0).unwrap(),
            [vec![1, 2]]
        );
        assert_eq!(
            run(&mut s, &[step("a", false, 2, &[3])], t0).unwrap(),
            [vec![1, 2, 3]]
        );
        let wrong = run(&mut s, &[step("a", false, 2, &[4])], t0).unwrap_err();
        assert!(matches!(
            wrong,
            Error::Session(SessionError::PositionMismatch {
                length: 3,
                start: 2,
                ..
            })
        ));
    }

    #[test]
    fn the_context_caps_a_session() {
        let (mut s, t0) = (store(), Instant::now());
        run(&mut s, &[step("a", true, 0, &[0; 8])], t0).unwrap();
        let e = run(&mut s, &[step("a", false, 8, &[1])], t0).unwrap_err();
        assert!(
            e.to_string().contains("exceed the n-gram context of 8"),
            "{e}"
        );
    }

    #[test]
    fn a_busy_session_refuses_a_second_step_and_a_fork() {
        let (mut s, t0) = (store(), Instant::now());
        run(&mut s, &[step("a", true, 0, &[1])], t0).unwrap();
        let first = [step("a", false, 1, &[2])];
        let inputs = s.begin(&first, t0).unwrap();
        assert!(matches!(
            s.begin(&first, t0),
            Err(Error::Session(SessionError::Busy(_)))
        ));
        assert!(matches!(
            s.fork("a", &["b".into()], false, t0),
            Err(Error::Session(SessionError::Busy(_)))
        ));
        s.finish(&first, Some(inputs), t0).unwrap();
        s.fork("a", &["b".into()], false, t0).unwrap();
        assert_eq!(
            run(&mut s, &[step("b", false, 2, &[9])], t0).unwrap(),
            [vec![1, 2, 9]]
        );
    }

    #[test]
    fn a_session_counts_its_history_and_a_fork_copies_the_counts() {
        let (mut s, t0) = (store(), Instant::now());
        let mut first = step("a", true, 0, &[1, 2, 3]);
        first.history = Some(History {
            prompt: vec![1, 2],
            generated: vec![3],
        });
        let inputs = s.begin(std::slice::from_ref(&first), t0).unwrap();
        let expected = inputs[0].seen.clone();
        assert!(!expected.is_empty());
        s.finish(&[first], Some(inputs), t0).unwrap();
        s.fork("a", &["b".into()], false, t0).unwrap();
        let failed = [step("b", false, 3, &[4])];
        let mut counted = s.begin(&failed, t0).unwrap();
        assert_eq!(
            counted.pop().unwrap().seen,
            expected,
            "b starts from a's counts"
        );
        s.finish(&failed, None, t0).unwrap();
        assert_eq!(s.sessions["b"].seen, expected);
    }

    #[test]
    fn a_release_that_overtakes_the_step_or_fork_creating_the_session_leaves_none() {
        let (mut s, t0) = (store(), Instant::now());
        assert_eq!(s.release(&["late".into(), "copy".into()], t0), 0);
        let late = run(&mut s, &[step("late", true, 0, &[1])], t0).unwrap_err();
        assert!(matches!(late, Error::Session(SessionError::NotFound(id)) if id == "late"));
        run(&mut s, &[step("a", true, 0, &[1])], t0).unwrap();
        let copy = s.fork("a", &["copy".into()], false, t0).unwrap_err();
        assert!(matches!(copy, Error::Session(SessionError::NotFound(id)) if id == "copy"));
        assert_eq!(s.len(t0), 1, "only a");
        // The stale call was what the name was held against: it is free again.
        run(&mut s, &[step("late", true, 0, &[1])], t0).unwrap();
    }

    #[test]
    fn a_failed_or_released_step_leaves_every_session_as_it_was() {
        let (mut s, t0) = (store(), Instant::now());
        run(&mut s, &[step("a", true, 0, &[1])], t0).unwrap();
        let steps = [step("a", false, 1, &[2]), step("new", true, 0, &[5])];
        s.begin(&steps, t0).unwrap();
        s.finish(&steps, None, t0).unwrap();
        assert_eq!(s.len(t0), 1, "the created session is gone");
        assert_eq!(
            run(&mut s, &[step("a", false, 1, &[3])], t0).unwrap(),
            [vec![1, 3]]
        );

        let steps = [step("a", false, 2, &[4]), step("new", true, 0, &[5])];
        let inputs = s.begin(&steps, t0).unwrap();
        assert_eq!(s.release(&["a".into()], t0), 1);
        assert!(
            matches!(s.finish(&steps, Some(inputs), t0), Err(Error::Session(SessionError::NotFound(id))) if id == "a")
        );
        assert_eq!(s.len(t0), 0, "the step that lost a session created nothing");
    }

    #[test]
    fn one_bad_step_refuses_the_whole_call() {
        let (mut s, t0) = (store(), Instant::now());
        let steps = [step("a", true, 0, &[1]), step("b", false, 0, &[1])];
        assert!(matches!(
            s.begin(&steps, t0),
            Err(Error::Session(SessionError::NotFound(_)))
        ));
        assert_eq!(s.len(t0), 0);
        let twice = [step("a", true, 0, &[1]), step("a", true, 0, &[1])];
        assert!(s
            .begin(&twice, t0)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn sessions_past_the_limit_are_refused() {
        let (mut s, t0) = (store(), Instant::now());
        run(
            &mut s,
            &[step("a", true, 0, &[1]), step("b", true, 0, &[1])],
            t0,
        )
        .unwrap();
        let e = run(
            &mut s,
            &[step("c", true, 0, &[1]), step("d", true, 0, &[1])],
            t0,
        );
        assert!(matches!(e, Err(Error::Overloaded(_))));
        assert!(matches!(
            s.fork("a", &["c".into(), "d".into()], false, t0),
            Err(Error::Overloaded(_))
        ));
        s.fork("a", &["c".into()], false, t0).unwrap();
    }

    #[test]
    fn idle_sessions_expire_after_the_ttl_but_busy_ones_stay() {
        let (mut s, t0) = (store(), Instant::now());
        run(
            &mut s,
            &[step("idle", true, 0, &[1]), step("busy", true, 0, &[1])],
            t0,
        )
        .unwrap();
        let later = t0 + Duration::from_secs(5);
        let running = [step("busy", false, 1, &[2])];
        let inputs = s.begin(&running, later).unwrap();
        assert_eq!(s.len(t0 + Duration::from_secs(9)), 2);
        assert_eq!(
            s.len(t0 + Duration::from_secs(10)),
            1,
            "idle went at its TTL"
        );
        s.finish(&running, Some(inputs), t0 + Duration::from_secs(11))
            .unwrap();
        assert_eq!(
            s.len(t0 + Duration::from_secs(20)),
            1,
            "used at 11 s, so alive until 21 s"
        );
        assert_eq!(s.len(t0 + Duration::from_secs(21)), 0);
        assert!(matches!(
            run(
                &mut s,
                &[step("busy", false, 2, &[3])],
                t0 + Duration::from_secs(21)
            ),
            Err(Error::Session(SessionError::NotFound(_)))
        ));
    }
}

//! The decoder's session contract served by the n-gram models, and Corpus.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use oneword_proto::common::v1 as common;
use oneword_proto::decoder::v1 as pb;
use oneword_runtime::Turns;
use oneword_sampling::Sampling;
use tonic::{Request, Response, Status};

use crate::convert::{self, Limits};
use crate::models::{ModelName, Models};
use crate::sessions::{self, Sessions, StepIds};
use crate::Error;

/// What every call shares.
pub struct State {
    pub models: Models,
    pub sessions: Mutex<Sessions>,
}

impl State {
    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions
            .lock()
            .expect("the n-gram sessions lock is never poisoned")
    }

    /// Runs one call's steps: checks and marks the sessions, computes each pick with no lock
    /// held, then writes the new ids (or undoes everything on an error).
    fn step(&self, steps: Vec<(StepIds, Option<Sampling>)>) -> Result<Vec<pb::StepResult>, Error> {
        let (ids, mut samplings): (Vec<StepIds>, Vec<Option<Sampling>>) = steps.into_iter().unzip();
        let inputs = {
            let mut sessions = self.sessions();
            let inputs = sessions.begin(&ids, Instant::now())?;
            sessions.settle(&ids, &mut samplings);
            inputs
        };
        let picks: Result<Vec<_>, Error> = inputs
            .iter()
            .zip(&samplings)
            .map(|(input, sampling)| match sampling {
                Some(s) => Ok(Some(
                    s.pick(self.models.row(input.model, &input.ids)?, &input.seen),
                )),
                None => Ok(None),
            })
            .collect();
        let lengths: Vec<usize> = inputs.iter().map(|i| i.ids.len()).collect();
        let inputs = picks.is_ok().then_some(inputs);
        self.sessions().finish(&ids, inputs, Instant::now())?;
        Ok(ids
            .into_iter()
            .zip(lengths)
            .zip(picks?)
            .map(|((step, length), picked)| convert::step_result(step.session_id, length, picked))
            .collect())
    }
}

/// The service.
pub struct BaselineService {
    pub state: Arc<State>,
    /// Steps and corpus counts run here, bounded, off the async workers.
    pub turns: Turns,
    pub limits: sessions::Limits,
    pub model_id: String,
    pub max_top_n: usize,
}

#[tonic::async_trait]
impl pb::decoder_server::Decoder for BaselineService {
    #[tracing::instrument(name = "step", skip_all, fields(sessions))]
    async fn step(
        &self,
        request: Request<pb::StepRequest>,
    ) -> Result<Response<pb::StepResponse>, Status> {
        let steps = request.into_inner().steps;
        tracing::Span::current().record("sessions", steps.len());
        if steps.is_empty() {
            return Err(Error::invalid("steps", "`steps` must not be empty").into());
        }
        let limits = Limits {
            vocab_size: self.state.models.vocab_size(),
            max_top_n: self.max_top_n,
        };
        let steps = steps
            .into_iter()
            .enumerate()
            .map(|(i, step)| convert::step(i, step, &limits))
            .collect::<Result<Vec<_>, _>>()?;
        let state = self.state.clone();
        let results = self
            .turns
            .run(move || state.step(steps))
            .await
            .map_err(Error::from)??;
        Ok(Response::new(pb::StepResponse {
            results,
            forward_ns: 0,
            // Answered at once: the baseline admits every step.
            queue_ns: 0,
        }))
    }

    async fn fork(
        &self,
        request: Request<pb::ForkRequest>,
    ) -> Result<Response<pb::ForkResponse>, Status> {
        let request = request.into_inner();
        if request.new_session_ids.is_empty()
            || request.new_session_ids.iter().any(String::is_empty)
        {
            return Err(Error::invalid(
                "new_session_ids",
                "`new_session_ids` must name at least one session, none empty",
            )
            .into());
        }
        self.state.sessions().fork(
            &request.source_session_id,
            &request.new_session_ids,
            request.seen_as_prompt,
            Instant::now(),
        )?;
        Ok(Response::new(pb::ForkResponse {}))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let released = self
            .state
            .sessions()
            .release(&request.into_inner().session_ids, Instant::now());
        Ok(Response::new(pb::ReleaseResponse {
            released: released as u32,
        }))
    }

    async fn info(
        &self,
        _: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let models = &self.state.models;
        let sessions = self.state.sessions().len(Instant::now()) as u32;
        Ok(Response::new(pb::InfoResponse {
            model: Some(common::ModelInfo {
                model_id: self.model_id.clone(),
                model_type: "ngram".into(),
                vocab_size: models.vocab_size() as u32,
                context_length: self.limits.context as u32,
                eos_token_id: models.eos_token_id(),
                device: "cpu".into(),
                ..Default::default()
            }),
            sessions,
            max_sessions: self.limits.max_sessions as u32,
            session_ttl_seconds: self.limits.ttl.as_secs() as u32,
            max_top_n: self.max_top_n as u32,
            ngram_models: ModelName::all(),
            ngram_corpus: models.corpus_name.clone(),
            ..Default::default()
        }))
    }

    async fn corpus(
        &self,
        request: Request<pb::CorpusRequest>,
    ) -> Result<Response<pb::CorpusResponse>, Status> {
        let input = convert::corpus_input(request.into_inner())?;
        let state = self.state.clone();
        let out = self
            .turns
            .run(move || state.models.corpus_stats(input))
            .await
            .map_err(Error::from)??;
        Ok(Response::new(convert::corpus_response(out)))
    }

    async fn score(
        &self,
        _: Request<pb::ScoreRequest>,
    ) -> Result<Response<pb::ScoreResponse>, Status> {
        Err(Error::NotHere("Score").into())
    }

    async fn inspect(
        &self,
        _: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        Err(Error::NotHere("Inspect").into())
    }

    async fn pool(
        &self,
        _: Request<pb::PoolRequest>,
    ) -> Result<Response<pb::PoolResponse>, Status> {
        Err(Error::NotHere("Pool").into())
    }

    async fn weights(
        &self,
        _: Request<pb::WeightsRequest>,
    ) -> Result<Response<pb::WeightsResponse>, Status> {
        Err(Error::NotHere("Weights").into())
    }
}

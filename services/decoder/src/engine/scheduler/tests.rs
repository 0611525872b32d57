//! The scheduler's rules, checked by driving the model thread's loop by hand on the tiny model:
//! no sockets, no threads, and a clock that moves only when a test moves it. Each test names the
//! rule it checks.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use oneword_model::{Checkpoint, Transformer};
use oneword_runtime::{Clock, Metrics, SessionError};
use oneword_sampling::{History, Sampling, Seen, Shaping};
use tokio::sync::oneshot::{self, error::TryRecvError};

use super::Worker;
use crate::engine::job::{Job, Limits, StepDone, StepInput};
use crate::engine::metrics::EngineMetrics;
use crate::Error;

/// The tiny random GPT-2 (2 layers, width 64), written and loaded once per test process: as the
/// CPU runs it, and as a GPU would (tensor caches, picks from candidates; see
/// [`Transformer::as_on_a_gpu`]).
fn models() -> &'static [Arc<Transformer>; 2] {
    static MODELS: OnceLock<(tempfile::TempDir, [Arc<Transformer>; 2])> = OnceLock::new();
    &MODELS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let tokenizer =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gpt2-tokenizer");
            oneword_model::tiny::RandomCheckpoint::tiny()
                .write(dir.path(), &tokenizer)
                .unwrap();
            let load = || {
                let checkpoint = Checkpoint::open(dir.path(), DType::F32, &Device::Cpu).unwrap();
                Transformer::load(&checkpoint).unwrap()
            };
            let models = [Arc::new(load()), Arc::new(load().as_on_a_gpu())];
            (dir, models)
        })
        .1
}

fn model() -> Arc<Transformer> {
    models()[0].clone()
}

/// Limits small enough to reach: KV-cache positions are reserved in blocks of 16 on the CPU.
fn limits() -> Limits {
    Limits {
        max_sessions: 4,
        session_ttl: Duration::from_secs(60),
        queue_capacity: 8,
        max_queue_wait: Duration::from_secs(5),
        kv_budget_tokens: 48,
        max_batch_tokens: 8,
        batch_wait: Duration::ZERO,
        prefill_budget: Duration::from_millis(50),
        prefill_stretch: 1.0,
    }
}

fn worker(limits: Limits) -> (Worker, Clock) {
    let clock = Clock::manual();
    (Worker::new(model(), limits, clock.clone(), None), clock)
}

/// A step of `rows` inputs for session `id` from `start`, creating it when `start` is 0.
fn step(id: &str, start: usize, rows: usize) -> StepInput {
    StepInput {
        session_id: id.into(),
        create: start == 0,
        start_position: start,
        embeddings: Tensor::zeros((rows, 64), DType::F32, &Device::Cpu).unwrap(),
        sampling: None,
        release_after: false,
        history: None,
        judge_ids: Vec::new(),
    }
}

type Answer = oneshot::Receiver<Result<StepDone, Error>>;

fn send(w: &mut Worker, inputs: Vec<StepInput>) -> Answer {
    let (reply, answer) = oneshot::channel();
    w.accept(Job::Step(inputs, reply));
    answer
}

/// One turn of the loop: forget abandoned requests, admit what fits, run one pass.
fn turn(w: &mut Worker) {
    w.drop_abandoned();
    w.admit();
    if !w.running.is_empty() {
        w.pass();
    }
}

/// Turns until nothing runs.
fn settle(w: &mut Worker) {
    for _ in 0..100 {
        turn(w);
        if w.running.is_empty() {
            return;
        }
    }
    panic!("the worker did not settle");
}

fn answered(answer: &mut Answer) -> Result<StepDone, Error> {
    answer.try_recv().expect("the step has been answered")
}

fn pending(answer: &mut Answer) -> bool {
    matches!(answer.try_recv(), Err(TryRecvError::Empty))
}

fn length(w: &Worker, id: &str) -> Option<usize> {
    w.sessions.get(id).map(|s| s.cache.len())
}

#[test]
fn steps_are_admitted_in_arrival_order_and_none_overtakes_one_waiting_for_room() {
    let (mut w, _) = worker(limits());
    // a reserves 32 of the 48 positions; b needs 32 more and waits; c would fit (16) but comes
    // after b, so it waits behind it.
    let mut a = send(&mut w, vec![step("a", 0, 17)]);
    settle(&mut w);
    answered(&mut a).unwrap();
    let mut b = send(&mut w, vec![step("b", 0, 17)]);
    let mut c = send(&mut w, vec![step("c", 0, 1)]);
    turn(&mut w);
    assert!(pending(&mut b) && pending(&mut c));
    assert_eq!(w.usage().waiting, 2);
    // Room comes back: both run, in order.
    let (reply, mut released) = oneshot::channel();
    w.accept(Job::Release(vec!["a".into()], reply));
    assert_eq!(released.try_recv().unwrap().unwrap(), 1);
    settle(&mut w);
    assert_eq!(answered(&mut b).unwrap().outputs[0].length, 17);
    assert_eq!(answered(&mut c).unwrap().outputs[0].length, 1);
    assert_eq!(w.committed_tokens(), 48);
}

#[test]
fn a_step_waits_for_room_at_most_max_queue_wait_then_is_refused_with_the_numbers() {
    let (mut w, clock) = worker(limits());
    let mut a = send(&mut w, vec![step("a", 0, 17)]);
    settle(&mut w);
    answered(&mut a).unwrap();
    let mut b = send(&mut w, vec![step("b", 0, 17)]);
    clock.advance(Duration::from_millis(4999));
    turn(&mut w);
    assert!(pending(&mut b), "still within --max-queue-wait-ms");
    clock.advance(Duration::from_millis(1));
    turn(&mut w);
    let Err(Error::NoRoom(message, retry_after)) = answered(&mut b) else {
        panic!("refused as overloaded")
    };
    assert!(
        message.contains("holds 32 of 48 positions") && message.contains("needs 32 more"),
        "{message}"
    );
    assert_eq!(retry_after, Duration::from_secs(5), "as long as it waited");
}

#[test]
fn a_step_larger_than_the_whole_budget_is_refused_at_once() {
    let (mut w, _) = worker(limits());
    let mut big = send(&mut w, vec![step("big", 0, 49)]);
    turn(&mut w);
    let Err(Error::ExceedsCapacity(message)) = answered(&mut big) else {
        panic!("refused as beyond the decoder's capacity")
    };
    assert!(
        message.contains("the decoder's limits are 48 positions"),
        "{message}"
    );
}

#[test]
fn decode_steps_go_first_and_prompts_fill_the_rest_of_a_pass_in_chunks() {
    let (mut w, _) = worker(limits());
    let mut a = send(&mut w, vec![step("a", 0, 2)]);
    settle(&mut w);
    answered(&mut a).unwrap();
    // A prompt of 20 arrives before a's next token: a's row still comes first.
    let mut prompt = send(&mut w, vec![step("p", 0, 20)]);
    let mut next = send(&mut w, vec![step("a", 2, 1)]);
    w.admit();
    let rows = |w: &Worker| -> Vec<(String, usize)> {
        w.plan()
            .0
            .into_iter()
            .map(|(r, p, rows)| (w.running[r].parts[p].input.session_id.clone(), rows))
            .collect()
    };
    assert_eq!(rows(&w), [("a".to_string(), 1), ("p".to_string(), 7)]);
    w.pass();
    answered(&mut next).unwrap();
    assert_eq!(rows(&w), [("p".to_string(), 8)]);
    w.pass();
    assert_eq!(rows(&w), [("p".to_string(), 5)]);
    w.pass();
    assert_eq!(answered(&mut prompt).unwrap().outputs[0].length, 20);
    assert_eq!(w.usage().passes, 4);
}

#[test]
fn a_step_whose_caller_went_away_is_undone() {
    let (mut w, _) = worker(limits());
    let mut a = send(&mut w, vec![step("a", 0, 3)]);
    settle(&mut w);
    answered(&mut a).unwrap();
    // Half-way through a 20-row step on a and the creation of b, the caller goes.
    let gone = send(&mut w, vec![step("a", 3, 20), step("b", 0, 4)]);
    turn(&mut w);
    assert!(length(&w, "a").unwrap() > 3, "the step had started");
    drop(gone);
    turn(&mut w);
    assert_eq!(
        length(&w, "a"),
        Some(3),
        "a is back to its length before the step"
    );
    assert_eq!(
        length(&w, "b"),
        None,
        "the session the step created is gone"
    );
    assert!(!w.sessions["a"].busy, "a can be stepped again");
    let mut again = send(&mut w, vec![step("a", 3, 1)]);
    settle(&mut w);
    assert_eq!(answered(&mut again).unwrap().outputs[0].length, 4);
}

fn release(w: &mut Worker, ids: &[&str]) -> usize {
    let (reply, mut released) = oneshot::channel();
    w.accept(Job::Release(
        ids.iter().map(|id| id.to_string()).collect(),
        reply,
    ));
    released.try_recv().unwrap().unwrap()
}

#[test]
fn a_release_that_overtakes_the_step_creating_the_session_leaves_no_session() {
    // A caller gives up on a step and releases its sessions. The step may still wait for its
    // turn when the release comes, or arrive after it: either way nothing may be left behind.
    let (mut w, _) = worker(limits());
    let mut waiting = send(&mut w, vec![step("a", 0, 3)]);
    assert_eq!(release(&mut w, &["a"]), 0, "a did not exist yet");
    settle(&mut w);
    assert!(matches!(
        answered(&mut waiting),
        Err(Error::Session(SessionError::NotFound(id))) if id == "a"
    ));
    assert_eq!(release(&mut w, &["b", "c"]), 0);
    let mut late = send(&mut w, vec![step("b", 0, 3)]);
    settle(&mut w);
    assert!(matches!(
        answered(&mut late),
        Err(Error::Session(SessionError::NotFound(_)))
    ));
    let mut source = send(&mut w, vec![step("s", 0, 3)]);
    settle(&mut w);
    answered(&mut source).unwrap();
    let (reply, mut forked) = oneshot::channel();
    w.accept(Job::Fork("s".into(), vec!["c".into()], false, reply));
    assert!(matches!(
        forked.try_recv().unwrap(),
        Err(Error::Session(SessionError::NotFound(id))) if id == "c"
    ));
    assert_eq!(
        w.usage().sessions,
        1,
        "only s: {:?}",
        w.sessions.keys().collect::<Vec<_>>()
    );
    // The stale call was what the id was held against: the name is free again.
    let mut again = send(&mut w, vec![step("b", 0, 1)]);
    settle(&mut w);
    answered(&mut again).unwrap();
}

/// `input` with its rows named as generated `ids`, picking greedily under `frequency_penalty`.
fn penalized(mut input: StepInput, ids: &[u32], frequency_penalty: f32) -> StepInput {
    input.history = Some(History {
        prompt: Vec::new(),
        generated: ids.to_vec(),
    });
    input.sampling = Some(Sampling {
        shaping: Some(Shaping {
            temperature: 0.0,
            frequency_penalty,
            ..Shaping::default()
        }),
        u: 0.0,
        top_n: 0,
        full_row: None,
    });
    input
}

#[test]
fn a_session_counts_its_history_for_the_penalties_forks_copy_it_and_undo_takes_it_back() {
    let (mut w, _) = worker(limits());
    // The same input twice: without a penalty the greedy pick is `best`...
    let mut plain = send(&mut w, vec![penalized(step("q", 0, 3), &[1, 2, 3], 0.0)]);
    settle(&mut w);
    let best = answered(&mut plain).unwrap().outputs[0]
        .picked
        .as_ref()
        .unwrap()
        .pick
        .token;
    // ... and once the session has generated it three times, 2 per time takes it out of reach
    // (the tiny model's logits span far less than 6).
    let mut p = send(&mut w, vec![penalized(step("p", 0, 3), &[best; 3], 2.0)]);
    settle(&mut w);
    let picked = answered(&mut p).unwrap().outputs[0].picked.clone().unwrap();
    assert_ne!(picked.pick.token, best);
    let mut expected = Seen::default();
    expected.add(&History {
        prompt: Vec::new(),
        generated: vec![best; 3],
    });
    assert_eq!(w.sessions["p"].seen, expected);
    let (reply, mut forked) = oneshot::channel();
    w.accept(Job::Fork("p".into(), vec!["r".into()], false, reply));
    forked.try_recv().unwrap().unwrap();
    assert_eq!(
        w.sessions["r"].seen, expected,
        "a fork starts with its source's counts"
    );
    assert_eq!(release(&mut w, &["q", "r"]), 2, "room");
    let (reply, mut forked) = oneshot::channel();
    w.accept(Job::Fork("p".into(), vec!["pp".into()], true, reply));
    forked.try_recv().unwrap().unwrap();
    assert_eq!(
        w.sessions["pp"].seen,
        expected.as_prompt(),
        "its past as prompt"
    );
    assert_eq!(release(&mut w, &["pp"]), 1, "room for p's growth");
    // A 20-row step on p whose caller goes half-way: its ids are taken back with its rows.
    let gone = send(&mut w, vec![penalized(step("p", 3, 20), &[7; 20], 2.0)]);
    turn(&mut w);
    assert!(length(&w, "p").unwrap() > 3, "the step had started");
    drop(gone);
    turn(&mut w);
    assert_eq!(length(&w, "p"), Some(3));
    assert_eq!(w.sessions["p"].seen, expected);
}

#[test]
fn the_batch_wait_is_at_most_half_the_recent_pass_time() {
    let mut limits = limits();
    limits.batch_wait = Duration::from_millis(5);
    let (mut w, _) = worker(limits);
    assert_eq!(
        w.batch_wait(),
        Duration::from_millis(5),
        "nothing measured yet"
    );
    w.pass_seconds = 0.001;
    assert_eq!(w.batch_wait(), Duration::from_micros(500), "a fast device");
    w.pass_seconds = 0.040;
    assert_eq!(w.batch_wait(), Duration::from_millis(5), "the flag caps it");
    // A pass run measures itself.
    w.pass_seconds = 0.0;
    let mut a = send(&mut w, vec![step("a", 0, 3)]);
    settle(&mut w);
    answered(&mut a).unwrap();
    assert!(w.pass_seconds > 0.0);
}

#[test]
fn a_judging_step_judges_every_row_across_its_chunks() {
    let (mut w, _) = worker(limits());
    // 20 rows in passes of at most 8: each chunk's rows are judged, in order.
    let mut judging = penalized(step("j", 0, 20), &[], 0.0);
    judging.history = None;
    judging.judge_ids = (0..20).collect();
    let mut answer = send(&mut w, vec![judging]);
    settle(&mut w);
    let out = answered(&mut answer).unwrap().outputs.remove(0);
    let tokens: Vec<u32> = out.judged.iter().map(|p| p.token).collect();
    assert_eq!(tokens, (0..20).collect::<Vec<u32>>());
    // The last row's distribution is the one the pick came from.
    let picked = out.picked.unwrap().pick;
    assert_eq!(out.judged[19].entropy, picked.entropy);
    assert!(out.judged.iter().all(|p| p.logprob < 0.0 && p.rank >= 1));
}

#[test]
fn a_step_whose_pass_failed_is_undone_and_answered_with_the_error() {
    let (mut w, _) = worker(limits());
    let mut a = send(&mut w, vec![step("a", 0, 3)]);
    settle(&mut w);
    answered(&mut a).unwrap();
    // Embeddings of the wrong width make the forward pass fail.
    let mut bad = step("a", 3, 2);
    bad.embeddings = Tensor::zeros((2, 65), DType::F32, &Device::Cpu).unwrap();
    let mut failed = send(&mut w, vec![bad]);
    settle(&mut w);
    assert!(matches!(answered(&mut failed), Err(Error::Model(_))));
    assert_eq!(length(&w, "a"), Some(3));
    assert!(!w.sessions["a"].busy);
}

#[test]
fn releasing_a_session_in_a_running_step_undoes_the_step_as_not_found() {
    let (mut w, _) = worker(limits());
    let mut running = send(&mut w, vec![step("a", 0, 20)]);
    turn(&mut w);
    let (reply, _released) = oneshot::channel();
    w.accept(Job::Release(vec!["a".into()], reply));
    turn(&mut w);
    assert!(
        matches!(answered(&mut running), Err(Error::Session(SessionError::NotFound(id))) if id == "a")
    );
    assert_eq!(w.usage().sessions, 0);
}

#[test]
fn a_session_in_a_running_step_is_busy_for_steps_and_forks() {
    let (mut w, _) = worker(limits());
    let _running = send(&mut w, vec![step("a", 0, 20)]);
    turn(&mut w);
    let mut second = send(&mut w, vec![step("a", 8, 1)]);
    turn(&mut w);
    assert!(matches!(
        answered(&mut second),
        Err(Error::Session(SessionError::Busy(_)))
    ));
    assert!(matches!(
        w.fork("a", vec!["b".into()], false),
        Err(Error::Session(SessionError::Busy(_)))
    ));
}

#[test]
fn a_fork_reserves_what_its_copies_hold_within_the_budget_and_the_session_count() {
    let (mut w, _) = worker(limits());
    let mut a = send(&mut w, vec![step("a", 0, 5)]);
    settle(&mut w);
    answered(&mut a).unwrap();
    // a holds 16 of 48: two copies fit (48), three never can (64 with a).
    let refused = w.fork("a", vec!["b".into(), "c".into(), "d".into()], false);
    assert!(
        matches!(refused, Err(Error::ExceedsCapacity(m)) if m.contains("need 48 KV-cache positions"))
    );
    assert_eq!(w.usage().sessions, 1, "a refused fork creates nothing");
    w.fork("a", vec!["b".into(), "c".into()], false).unwrap();
    assert_eq!((w.usage().sessions, w.committed_tokens()), (3, 48));
    // One more copy would fit an empty decoder: the budget is full now, not too small.
    let full = w.fork("a", vec!["e".into()], false);
    assert!(matches!(full, Err(Error::Overloaded(_))));
    assert_eq!(length(&w, "c"), Some(5));
    assert!(matches!(
        w.fork("a", vec!["b".into()], false),
        Err(Error::Session(SessionError::Exists(_)))
    ));
    // The copies are sessions of their own: one grows, the source does not.
    let mut b = send(&mut w, vec![step("b", 5, 1)]);
    settle(&mut w);
    assert_eq!(answered(&mut b).unwrap().outputs[0].length, 6);
    assert_eq!(length(&w, "a"), Some(5));
}

#[test]
fn new_sessions_count_against_max_sessions_as_positions_count_against_the_budget() {
    let (mut w, _) = worker(Limits {
        max_sessions: 1,
        ..limits()
    });
    // Two new sessions never fit a limit of one: refused at once.
    let mut two = send(&mut w, vec![step("x", 0, 1), step("y", 0, 1)]);
    turn(&mut w);
    let Err(Error::ExceedsCapacity(message)) = answered(&mut two) else {
        panic!("refused as beyond the decoder's capacity")
    };
    assert!(
        message.contains("2 new sessions") && message.contains("1 sessions"),
        "{message}"
    );
    // One more than the limit waits for a session to go.
    let mut a = send(&mut w, vec![step("a", 0, 1)]);
    settle(&mut w);
    answered(&mut a).unwrap();
    let mut b = send(&mut w, vec![step("b", 0, 1)]);
    turn(&mut w);
    assert!(pending(&mut b));
    let (reply, _released) = oneshot::channel();
    w.accept(Job::Release(vec!["a".into()], reply));
    settle(&mut w);
    answered(&mut b).unwrap();
}

#[test]
fn idle_sessions_expire_at_their_ttl_and_sessions_in_a_step_do_not() {
    let (mut w, clock) = worker(limits());
    let mut a = send(&mut w, vec![step("idle", 0, 1), step("busy", 0, 1)]);
    settle(&mut w);
    answered(&mut a).unwrap();
    clock.advance(Duration::from_secs(30));
    // busy starts a long step at 30 s and is mid-way through it at the TTL.
    let _long = send(&mut w, vec![step("busy", 1, 20)]);
    turn(&mut w);
    clock.advance(Duration::from_secs(29));
    w.expire_idle();
    assert_eq!(w.usage().sessions, 2, "59 s idle is within the 60 s TTL");
    clock.advance(Duration::from_secs(1));
    w.expire_idle();
    assert!(length(&w, "idle").is_none(), "idle went at 60 s");
    assert!(
        length(&w, "busy").is_some(),
        "a session in a step never expires"
    );
}

#[test]
fn a_full_waiting_queue_refuses_more_steps_at_once() {
    let (mut w, _) = worker(Limits {
        queue_capacity: 1,
        ..limits()
    });
    let _a = send(&mut w, vec![step("a", 0, 1)]);
    let mut b = send(&mut w, vec![step("b", 0, 1)]);
    let Err(Error::NoRoom(message, retry_after)) = answered(&mut b) else {
        panic!("refused as overloaded")
    };
    assert!(message.contains("already waiting"), "{message}");
    // The head has waited nothing yet: it is settled within the whole queue wait.
    assert_eq!(retry_after, limits().max_queue_wait);
}

/// The GPU's way through passes (caches from the block pool, each pick made from the candidates
/// reduced with the logits, the whole row fetched only when they cannot tell) picks what the
/// CPU's way picks from whole rows: same token, rank and top list, log-probabilities within
/// the two paths' float differences. Both run here, on the CPU.
#[test]
fn the_gpu_path_picks_from_candidates_what_the_cpu_path_picks_from_rows() {
    let shaped = |temperature, top_k, top_p, frequency_penalty| Shaping {
        temperature,
        top_k,
        top_p,
        frequency_penalty,
        ..Shaping::default()
    };
    let cases = [
        // With how many of the 4 picks on the GPU path downloading their row, where it is sure.
        ("greedy", shaped(0.0, None, None, 0.0), 0.0, Some(0)),
        (
            "top-k at 0.8",
            shaped(0.8, Some(40), None, 0.0),
            0.37,
            Some(0),
        ),
        // The tiny model's rows are flat: at 0.8 the nucleus and the draw may run past the
        // candidates; at 0.05 they are among them.
        (
            "a nucleus at 0.8",
            shaped(0.8, None, Some(0.5), 0.0),
            0.61,
            None,
        ),
        (
            "a nucleus at 0.05",
            shaped(0.05, None, Some(0.5), 0.0),
            0.61,
            Some(0),
        ),
        (
            "the whole row at 1.0",
            shaped(1.0, None, None, 0.0),
            0.61,
            None,
        ),
        (
            "the whole row at 0.05",
            shaped(0.05, None, None, 0.0),
            0.3,
            Some(0),
        ),
        (
            "a penalty (the row decides)",
            shaped(0.0, None, None, 0.5),
            0.0,
            Some(4),
        ),
    ];
    let embeddings = |start: usize, rows: usize| {
        let values = (start * 64..(start + rows) * 64).map(|i| (i as f32 * 0.37).sin());
        Tensor::from_iter(values, &Device::Cpu)
            .and_then(|t| t.reshape((rows, 64)))
            .unwrap()
    };
    for (case, shaping, u, downloaded) in cases {
        let picks = models().clone().map(|model| {
            let gpu = model.logits_on_device();
            let metrics = EngineMetrics::new(&Metrics::new("decoder"), 48, 1);
            let downloads = metrics.logit_rows_downloaded.clone();
            let mut w = Worker::new(model.clone(), limits(), Clock::manual(), Some(metrics));
            // A prompt of 5, then 3 steps of one row.
            let mut picks = Vec::new();
            for (start, rows) in [(0, 5), (5, 1), (6, 1), (7, 1)] {
                let mut input = penalized(step("s", start, rows), &[1, 2, 3], 0.0);
                if start > 0 {
                    input.history = None;
                }
                input.embeddings = embeddings(start, rows);
                let sampling = input.sampling.as_mut().unwrap();
                (sampling.shaping, sampling.u, sampling.top_n) = (Some(shaping.clone()), u, 5);
                let mut answer = send(&mut w, vec![input]);
                settle(&mut w);
                picks.push(answered(&mut answer).unwrap().outputs.remove(0).picked);
            }
            assert_eq!(
                model.cache_blocks_in_use() > 0,
                gpu,
                "{case}: the cache's kind"
            );
            match (gpu, downloaded) {
                (false, _) => assert_eq!(downloads.get(), 0, "{case}: rows on the host"),
                (true, Some(n)) => assert_eq!(downloads.get(), n, "{case}: rows downloaded"),
                (true, None) => {}
            }
            assert_eq!(release(&mut w, &["s"]), 1);
            assert_eq!(
                model.cache_blocks_in_use(),
                0,
                "{case}: blocks left in the pool"
            );
            picks
        });
        for (step, (cpu, gpu)) in picks[0].iter().zip(&picks[1]).enumerate() {
            let (cpu, gpu) = (&cpu.as_ref().unwrap().pick, &gpu.as_ref().unwrap().pick);
            let ids = |top: &[(u32, f32)]| top.iter().map(|&(id, _)| id).collect::<Vec<_>>();
            assert_eq!(
                (cpu.token, cpu.rank, ids(&cpu.raw_top), ids(&cpu.shaped_top)),
                (gpu.token, gpu.rank, ids(&gpu.raw_top), ids(&gpu.shaped_top)),
                "{case}, step {step}"
            );
            for (a, b) in [
                (cpu.logprob, gpu.logprob),
                (cpu.shaped_logprob, gpu.shaped_logprob),
                (cpu.entropy, gpu.entropy),
            ] {
                assert!((a - b).abs() < 1e-3, "{case}, step {step}: {a} against {b}");
            }
        }
    }
}

//! Keeping rayon's other threads awake through a forward pass.
//!
//! A pass runs ~50 parallel products and a few parallel loops besides, each a few tens to a few
//! hundred microseconds at one stream. Between them rayon's idle threads spin briefly and then
//! sleep, and waking one costs a futex call and a reschedule: measured on a two-core VM, about
//! 70 µs a wake, which made a 2.4 MB matrix stream at 15 GB/s instead of the 27 a spinning
//! partner reaches (the same product written in C with OpenMP, passive against active waiting).
//! So for the length of a pass the pool's other threads run a partner job that keeps looking
//! for work (rayon's own queues, through `yield_now`) instead of sleeping, as OpenMP's and
//! ggml's threads spin between operations.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// Whether this thread has a pass on its stack. A partner must not spin above a pass that
    /// is waiting for its own work to end: two passes on two threads, each spinning for the
    /// other, would never end.
    static IN_PASS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `pass` on one of rayon's threads, with every other thread of the pool spinning for
/// work until it returns (those that are free to: a thread busy elsewhere joins when it is done,
/// or never, and the pass runs without it).
pub(crate) fn with_partners<R: Send>(pass: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        for _ in 1..rayon::current_num_threads() {
            scope.spawn(|_| partner(&done));
        }
        let _ending = Ending {
            done: &done,
            was_in_pass: IN_PASS.replace(true),
        };
        pass()
    })
}

/// Ends the partners' spinning however the pass ends: a pass that panics must still release
/// them, or the scope would wait for them forever instead of passing the panic on.
struct Ending<'a> {
    done: &'a AtomicBool,
    was_in_pass: bool,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        IN_PASS.set(self.was_in_pass);
        self.done.store(true, Ordering::Release);
    }
}

/// Runs whatever work the pool has until `done`; returns at once on a thread with a pass of its
/// own on the stack (the pass's own thread included, which may pop this job itself).
fn partner(done: &AtomicBool) {
    if IN_PASS.get() {
        return;
    }
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            // Look at the other threads' queues less often than every cycle: each look reads
            // their deques' shared lines.
            for _ in 0..32 {
                std::hint::spin_loop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// Some arithmetic that takes a while and cannot be folded away.
    fn work(rounds: u64) -> u64 {
        (0..rounds).fold(1u64, |h, i| {
            std::hint::black_box(h.wrapping_mul(31).wrapping_add(i))
        })
    }

    #[test]
    fn passes_on_every_thread_of_a_pool_at_once_all_end() {
        // Two passes at once on a pool of two, each made of small parallel loops: a thread
        // waiting inside its own pass for its stolen half steals whatever is oldest in the other
        // thread's queue, the other pass's partner. A partner that spun there until the other
        // pass ended would wait for a pass waiting for it.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let pass = || {
            with_partners(|| {
                (0..2_000)
                    .map(|_| {
                        let (a, b) = rayon::join(|| work(200), || work(2_000));
                        a ^ b
                    })
                    .fold(0, u64::wrapping_add)
            })
        };
        let one = (0..2_000).fold(0, |s: u64, _| s.wrapping_add(work(200) ^ work(2_000)));
        for _ in 0..20 {
            assert_eq!(pool.install(|| rayon::join(pass, pass)), (one, one));
        }
    }

    #[test]
    fn a_pass_that_panics_passes_the_panic_on_and_the_pool_goes_on() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let caught = pool.install(|| {
            std::panic::catch_unwind(|| {
                with_partners(|| -> u64 {
                    (0..1_000u64).into_par_iter().sum::<u64>();
                    panic!("a pass that fails")
                })
            })
        });
        assert!(caught.is_err());
        assert_eq!(pool.install(|| with_partners(|| work(10))), work(10));
    }

    #[test]
    fn a_pass_outside_any_pool_runs_and_returns_its_result() {
        assert_eq!(
            with_partners(|| (0..1000u32).into_par_iter().sum::<u32>()),
            499_500
        );
    }
}

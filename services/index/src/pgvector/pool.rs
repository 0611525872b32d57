//! A small bounded pool of blocking PostgreSQL connections, every use of which is one
//! transaction, and the one mapping of PostgreSQL's errors into the index's.
//!
//! The pool holds at most `size` connections (the service's `--workers`: no more backend calls
//! than that run at once, so a call never waits for a connection). A connection that failed
//! is dropped, and with it the idle ones, which most likely failed the same way (the server
//! restarted); a connection from the pool that turns out to be dead at BEGIN is replaced
//! once, since nothing was sent on it.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, NoTls, Transaction};

use crate::error::Error;

/// See the module documentation.
pub struct Pool {
    config: postgres::Config,
    size: usize,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    idle: Vec<Client>,
    /// Connections open, idle or in use.
    open: usize,
}

/// Whether a transaction only reads (then it runs READ ONLY, REPEATABLE READ: every statement
/// of a search sees the same snapshot, and a read-only one is never refused for it) or may
/// write (READ COMMITTED; a connection lost while committing leaves its outcome unknown, which
/// the error says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A connection taken from the pool; it goes back when dropped, unless it failed.
struct Taken<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    /// Whether it was used before (and so may have died since).
    reused: bool,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let client = self.client.take();
        let mut state = self.pool.lock();
        let stale = match client {
            Some(client) if !client.is_closed() => {
                state.idle.push(client);
                Vec::new()
            }
            _ => {
                // The server closed it (or we gave up on it): the idle ones are suspect too.
                state.open -= 1 + state.idle.len();
                std::mem::take(&mut state.idle)
            }
        };
        drop(state);
        self.pool.freed.notify_all();
        drop(stale); // closing them talks to the server: not under the lock
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing a blocking client blocks on its own runtime, which panics on an async
        // worker, where the service (and so the pool) is dropped at shutdown: close them on a
        // thread of their own.
        let idle = std::mem::take(&mut self.lock().idle);
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("postgres-close".into())
                .spawn(move || drop(idle));
        }
    }
}

impl Pool {
    /// A pool of at most `size` connections to `config`, none opened yet. A DSN without a
    /// `connect_timeout` gets 5 s and one without a `tcp_user_timeout` 30 s, so that a server
    /// that does not answer, or a host that vanished mid-call, is UNAVAILABLE soon rather than
    /// after the kernel's minutes.
    pub fn new(mut config: postgres::Config, size: usize) -> Self {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(30));
        }
        if config.get_application_name().is_none() {
            config.application_name("oneword-index");
        }
        Pool {
            config,
            size: size.max(1),
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection, or a new one while fewer than `size` are open, or the next one
    /// given back.
    fn take(&self, what: &str, access: Access) -> Result<Taken<'_>, Error> {
        let mut state = self.lock();
        loop {
            if let Some(client) = state.idle.pop() {
                return Ok(Taken {
                    pool: self,
                    client: Some(client),
                    reused: true,
                });
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(Taken {
                        pool: self,
                        client: Some(client),
                        reused: false,
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(failed(what, access, e))
                    }
                };
            }
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Runs `work` in one transaction (`what` names it in errors, "searching") and commits
    /// it; on any error it is rolled back and nothing is changed, except when the connection
    /// is lost during the COMMIT itself, which the error then says.
    pub fn transaction<T>(
        &self,
        what: &str,
        access: Access,
        work: impl FnOnce(&mut Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut taken = self.take(what, access)?;
        loop {
            let client = taken
                .client
                .as_mut()
                .expect("a taken connection holds its client; this is a bug");
            let builder = client.build_transaction();
            let builder = match access {
                Access::Read => builder
                    .read_only(true)
                    .isolation_level(IsolationLevel::RepeatableRead),
                Access::Write => builder,
            };
            let e = match builder.start() {
                Ok(mut tx) => {
                    let out = work(&mut tx)?;
                    tx.commit().map_err(|e| match access {
                        Access::Write if is_transport(&e) => Error::Postgres(format!(
                            "the connection was lost while committing ({}), so {what} may or \
                             may not have been applied; retrying it is safe",
                            describe(&e)
                        )),
                        _ => failed(what, access, e),
                    })?;
                    return Ok(out);
                }
                Err(e) => e,
            };
            // Nothing was sent but BEGIN: a connection idle since before the server went away
            // is replaced, once (the pool then holds no idle ones, so the next is new).
            let reused = taken.reused;
            taken.client = None;
            drop(taken);
            if !reused {
                return Err(failed(what, access, e));
            }
            taken = self.take(what, access)?;
        }
    }
}

/// Whether the error is the connection's rather than the statement's: the server could not
/// be reached, went away or stopped answering.
pub fn is_transport(e: &postgres::Error) -> bool {
    use std::error::Error as _;
    e.as_db_error().is_none()
        && (e.is_closed()
            || e.source().is_some_and(|s| s.is::<std::io::Error>())
            || e.to_string().starts_with("timeout"))
}

/// A PostgreSQL error while `what` ("searching"), as the client sees it: the server
/// unreachable, shutting down, out of resources or in recovery is UNAVAILABLE, naming
/// PostgreSQL and saying that nothing was changed (a transaction that failed before its
/// COMMIT rolls back); anything else is a bug or a broken database, INTERNAL, logged where it
/// becomes a status. Errors the caller can explain (a dropped table, a taken name) are
/// matched before this.
pub fn failed(what: &str, access: Access, e: postgres::Error) -> Error {
    let retry = match access {
        Access::Read => "retry later",
        Access::Write => "nothing was changed, retry later",
    };
    let unavailable = |detail: String| {
        tracing::warn!(error = %detail, "PostgreSQL failed while {what}");
        Error::Postgres(format!("{detail} while {what}; {retry}"))
    };
    match e.code() {
        None if is_transport(&e) => unavailable(describe(&e)),
        Some(code) if is_unavailable(code) => unavailable(describe(&e)),
        _ => Error::Internal(format!("PostgreSQL, while {what}: {}", describe(&e))),
    }
}

/// An error in words: the server's message and SQLSTATE, or the client's error and its cause
/// (the error's own Display leaves both out).
pub fn describe(e: &postgres::Error) -> String {
    use std::error::Error as _;
    match (e.as_db_error(), e.source()) {
        (Some(db), _) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

/// SQLSTATEs that say "not now" rather than "never": connection problems (class 08), too many
/// connections or a full disk (53), the server shutting down or starting up (57P), a system
/// error (58), a conflict to retry (40001, 40P01), a lock not granted (55P03), a statement
/// cancelled (57014) and a read-only server (25006, a standby).
fn is_unavailable(code: &SqlState) -> bool {
    let code = code.code();
    ["08", "53", "57P", "58"]
        .iter()
        .any(|class| code.starts_with(class))
        || ["40001", "40P01", "55P03", "57014", "25006"].contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_server_is_unavailable_and_named() {
        // Port 1 on loopback: refused at once.
        let config: postgres::Config = "host=127.0.0.1 port=1 user=x dbname=x".parse().unwrap();
        let pool = Pool::new(config, 1);
        for _ in 0..2 {
            let e = pool
                .transaction("searching", Access::Read, |_| Ok(()))
                .unwrap_err();
            let status = tonic::Status::from(e);
            assert_eq!(status.code(), tonic::Code::Unavailable);
            assert!(
                status
                    .message()
                    .starts_with("the PostgreSQL database is unavailable: error connecting"),
                "{}",
                status.message()
            );
            assert!(status.message().contains("while searching"));
        }
        assert_eq!(pool.lock().open, 0, "a failed connect gives its place back");
    }

    #[test]
    fn sqlstates_that_mean_not_now() {
        for code in ["08006", "53300", "57P01", "57P03", "40001", "25006"] {
            assert!(is_unavailable(&SqlState::from_code(code)), "{code}");
        }
        for code in ["42P01", "23505", "22P02", "42601"] {
            assert!(!is_unavailable(&SqlState::from_code(code)), "{code}");
        }
    }
}

//! The generations running on this gateway, by request id: a client names its request (or gets
//! a minted id back), and `Cancel` from any connection ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::Error;

/// Longest client request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// The running generations. Each holds a permit of the gateway's in-flight limit, so the table
/// never holds more than that many.
#[derive(Default)]
pub struct Running {
    ids: Mutex<HashMap<String, watch::Sender<bool>>>,
}

/// One running generation's entry; dropping it (the generation ended, however) removes it.
pub struct Registration {
    pub id: String,
    cancelled: watch::Receiver<bool>,
    running: Arc<Running>,
}

impl Running {
    /// Enters a generation under the client's id, or a minted one when none was given.
    /// ALREADY_EXISTS when a running generation has that id.
    pub fn register(self: &Arc<Self>, id: Option<String>) -> Result<Registration, Error> {
        let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let mut ids = self
            .ids
            .lock()
            .expect("the running table is never poisoned");
        if ids.contains_key(&id) {
            return Err(Error::AlreadyExists(format!(
                "a request with `request_id` {id:?} is already running; ids must be unique among running requests"
            )));
        }
        let (tx, cancelled) = watch::channel(false);
        ids.insert(id.clone(), tx);
        Ok(Registration {
            id,
            cancelled,
            running: self.clone(),
        })
    }

    /// Asks the generation named `id` to end; NOT_FOUND when none by that name is running.
    pub fn cancel(&self, id: &str) -> Result<(), Error> {
        let ids = self
            .ids
            .lock()
            .expect("the running table is never poisoned");
        match ids.get(id) {
            Some(tx) => {
                tx.send_replace(true);
                Ok(())
            }
            None => Err(Error::NotFound(format!(
                "no request with `request_id` {id:?} is running (it may have finished)"
            ))),
        }
    }
}

impl Registration {
    /// Resolves once `Cancel` names this generation; never otherwise.
    pub fn cancelled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.cancelled.clone();
        async move {
            if rx.wait_for(|&cancelled| cancelled).await.is_err() {
                // The sender lives as long as the registration, which outlives this wait.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut ids = self
            .running
            .ids
            .lock()
            .expect("the running table is never poisoned");
        ids.remove(&self.id);
    }
}

/// Checks a client's request id: 1 to [`MAX_REQUEST_ID_BYTES`] ASCII letters, digits and `-_.:`
/// (safe in a log line, a metadata header and a session name). Empty means "mint one".
pub fn valid_id(field: &str, id: String) -> Result<Option<String>, Error> {
    if id.is_empty() {
        return Ok(None);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
    if id.len() > MAX_REQUEST_ID_BYTES || !id.chars().all(allowed) {
        let shown: String = id.chars().take(40).collect();
        return Err(Error::invalid(
            field.to_string(),
            format!(
                "`{field}` is {shown:?} ({} bytes); it must be 1 to {MAX_REQUEST_ID_BYTES} ASCII letters, digits, '-', '_', '.' or ':'",
                id.len()
            ),
        ));
    }
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_id_is_unique_while_running_and_free_again_after() {
        let running = Arc::new(Running::default());
        let first = running.register(Some("job-1".into())).unwrap();
        let again = running.register(Some("job-1".into()));
        assert!(matches!(again, Err(Error::AlreadyExists(_))));
        drop(first);
        running.register(Some("job-1".into())).unwrap();
    }

    #[tokio::test]
    async fn cancel_wakes_the_named_generation_only() {
        let running = Arc::new(Running::default());
        let a = running.register(None).unwrap();
        let b = running.register(None).unwrap();
        assert_ne!(a.id, b.id);
        running.cancel(&a.id).unwrap();
        a.cancelled().await;
        let b_woke = tokio::time::timeout(std::time::Duration::from_millis(20), b.cancelled());
        assert!(b_woke.await.is_err(), "cancelling a woke b");
        assert!(matches!(running.cancel("nobody"), Err(Error::NotFound(_))));
    }

    #[test]
    fn ids_are_checked_for_length_and_characters() {
        assert_eq!(valid_id("request_id", String::new()).unwrap(), None);
        assert_eq!(
            valid_id("request_id", "a-b_c.d:9".into()).unwrap(),
            Some("a-b_c.d:9".into())
        );
        for bad in ["has space", "new\nline", "ü", &"x".repeat(129)] {
            let e = valid_id("request_id", bad.to_string()).unwrap_err();
            assert!(e.to_string().contains("`request_id`"), "{e}");
        }
    }
}

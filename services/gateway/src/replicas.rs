//! Client-side balancing over the replicas of a downstream service. A Kubernetes Service's
//! ClusterIP balances connections, and gRPC sends everything over one connection, so one
//! gateway would talk to one decoder. Instead the gateway resolves each service's name (a
//! headless Service resolves to every ready pod), keeps a lazily connected channel per address,
//! re-resolves periodically, and sends each piece of work to the replica with the least work in
//! flight. The servers close connections after a maximum age, so that nothing sticks to a
//! replica for ever.
//!
//! A replica that fails calls at the transport level several times in a row leaves the rotation
//! for a backoff (linkerd's failure accrual), so that one that fails fast does not attract the
//! traffic that "least work in flight" would send it. A call refused before any work was done
//! (UNAVAILABLE: draining, starting, unreachable) is tried once more on another replica.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use oneword_runtime::deadline::Deadline;
use oneword_runtime::status::never_sent;
use oneword_runtime::telemetry::{traced_with, TracedChannel};
use oneword_runtime::ServiceToken;
use tonic::transport::{Endpoint, Uri};
use tonic::{Code, Status};

use crate::downstream::failed;
use crate::Error;

/// Tries of one stateless call when replicas fail it (see [`Replicas::call`]).
const CALL_ATTEMPTS: u32 = 3;
/// Transport failures in a row after which a replica leaves the rotation.
const FAILURES_TO_EJECT: u32 = 3;
/// How long a first ejection lasts; each ejection in a row doubles it, up to `MAX_EJECTION`.
const FIRST_EJECTION: Duration = Duration::from_secs(1);
const MAX_EJECTION: Duration = Duration::from_secs(30);

/// The replicas of one service.
#[derive(Clone)]
pub struct Replicas {
    service: &'static str,
    targets: Arc<Vec<Target>>,
    inner: Arc<RwLock<Vec<Replica>>>,
    /// Where the search for the least loaded replica starts, so that ties rotate.
    next: Arc<AtomicUsize>,
    dial: Dial,
}

/// How channels to a replica are made.
#[derive(Clone)]
pub struct Dial {
    /// How long a connection may take before calls answer UNAVAILABLE.
    pub connect_timeout: Duration,
    /// Sent with every call: the internal services admit only holders of it.
    pub token: ServiceToken,
}

/// One configured address: `http://name:port`, resolved to every address `name` has.
#[derive(Clone, Debug)]
struct Target {
    host: String,
    port: u16,
}

struct Replica {
    address: SocketAddr,
    channel: TracedChannel,
    /// Work in flight on this replica (pinned generations for the decoder, calls otherwise).
    load: Arc<AtomicUsize>,
    accrual: Arc<Mutex<Accrual>>,
}

/// A replica's recent transport failures, and whether they took it out of the rotation.
#[derive(Default)]
struct Accrual {
    failures_in_a_row: u32,
    ejections_in_a_row: u32,
    ejected_until: Option<Instant>,
}

impl Accrual {
    fn ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| until > now)
    }
}

/// A channel to one replica, counted as that replica's load until dropped.
#[derive(Clone)]
pub struct Pinned {
    pub channel: TracedChannel,
    pub address: SocketAddr,
    service: &'static str,
    accrual: Arc<Mutex<Accrual>>,
    _load: Arc<LoadGuard>,
}

impl Pinned {
    /// Records how a call to this replica ended: a transport failure counts towards ejecting
    /// it; anything the replica itself answered (an error included) shows it is alive.
    pub fn report(&self, status: Option<&Status>) {
        let mut accrual = lock(&self.accrual);
        if status.is_some_and(never_sent) {
            // The connection was being recycled; the replica is as it was.
            return;
        }
        if !status.is_some_and(is_replica_failure) {
            *accrual = Accrual::default();
            return;
        }
        if accrual.ejected(Instant::now()) {
            // Calls that were in flight when it failed, not new evidence.
            return;
        }
        accrual.failures_in_a_row += 1;
        if accrual.failures_in_a_row < FAILURES_TO_EJECT {
            return;
        }
        let backoff = (FIRST_EJECTION * 2u32.saturating_pow(accrual.ejections_in_a_row.min(8)))
            .min(MAX_EJECTION);
        accrual.failures_in_a_row = 0;
        accrual.ejections_in_a_row += 1;
        accrual.ejected_until = Some(Instant::now() + backoff);
        tracing::warn!(
            service = self.service,
            replica = %self.address,
            backoff_ms = backoff.as_millis() as u64,
            "{FAILURES_TO_EJECT} transport failures in a row; the replica leaves the rotation for a while"
        );
    }
}

/// Whether a call's status says the replica (or the way to it) failed, rather than the call:
/// UNAVAILABLE (refused, draining, unreachable), CANCELLED, or any error the client library made up
/// itself from a broken connection (a status that carries a source did not come from the
/// server: a reset, a GOAWAY, a refused connect).
pub fn is_replica_failure(status: &Status) -> bool {
    // CANCELLED from a downstream call is the transport's doing (a stream reset as a replica
    // shuts down): the gateway's own cancellations drop the call and see no status at all.
    matches!(status.code(), Code::Unavailable | Code::Cancelled)
        || std::error::Error::source(status).is_some()
}

fn lock(accrual: &Mutex<Accrual>) -> std::sync::MutexGuard<'_, Accrual> {
    accrual
        .lock()
        .expect("the accrual is never poisoned; this is a bug")
}

struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Replicas {
    /// Parses `urls` (comma-separated `http://host:port`), resolves them once in the background
    /// and again every `refresh`, for as long as a handle exists.
    pub fn start(
        service: &'static str,
        urls: &str,
        dial: Dial,
        refresh: Duration,
    ) -> anyhow::Result<Self> {
        let targets = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|url| parse(service, url))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!targets.is_empty(), "no address given for the {service}");
        let replicas = Replicas {
            service,
            targets: Arc::new(targets),
            inner: Arc::default(),
            next: Arc::default(),
            dial: dial.clone(),
        };
        tokio::spawn(refresh_while_used(
            Arc::downgrade(&replicas.inner),
            service,
            replicas.targets.clone(),
            dial,
            refresh,
        ));
        Ok(replicas)
    }

    /// The replica with the least work in flight (resolving the name first if nothing is known
    /// yet), or UNAVAILABLE naming the service when its name resolves to nothing.
    pub async fn pick(&self) -> Result<Pinned, Error> {
        self.pick_excluding(&[]).await
    }

    /// Like [`Replicas::pick`], leaving out the replicas at `excluded` (those a piece of work
    /// already failed on). Ejected replicas are left out too while any other is in the
    /// rotation; when all are ejected, the one whose backoff ends first is tried.
    pub async fn pick_excluding(&self, excluded: &[SocketAddr]) -> Result<Pinned, Error> {
        if self.read().is_empty() {
            let addresses = resolve(&self.targets).await;
            update(&self.inner, &addresses, &self.dial);
        }
        let replicas = self.read();
        let candidates: Vec<&Replica> = replicas
            .iter()
            .filter(|r| !excluded.contains(&r.address))
            .collect();
        if candidates.is_empty() {
            let message = if replicas.is_empty() {
                let names: Vec<String> = self
                    .targets
                    .iter()
                    .map(|t| format!("{}:{}", t.host, t.port))
                    .collect();
                format!("{} resolves to no address", names.join(","))
            } else {
                format!(
                    "no replica is left to try: the work failed on {}",
                    excluded
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(Error::Downstream(
                self.service,
                tonic::Status::unavailable(message),
            ));
        }
        let now = Instant::now();
        let in_rotation: Vec<&Replica> = candidates
            .iter()
            .copied()
            .filter(|r| !lock(&r.accrual).ejected(now))
            .collect();
        let chosen = if in_rotation.is_empty() {
            candidates
                .into_iter()
                .min_by_key(|r| lock(&r.accrual).ejected_until)
                .expect("the list is not empty; this is a bug")
        } else {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            (0..in_rotation.len())
                .map(|i| in_rotation[(start + i) % in_rotation.len()])
                .min_by_key(|r| r.load.load(Ordering::Acquire))
                .expect("the list is not empty; this is a bug")
        };
        chosen.load.fetch_add(1, Ordering::AcqRel);
        Ok(Pinned {
            channel: chosen.channel.clone(),
            address: chosen.address,
            service: self.service,
            accrual: chosen.accrual.clone(),
            _load: Arc::new(LoadGuard(chosen.load.clone())),
        })
    }

    /// Makes one stateless call, tried again (up to [`CALL_ATTEMPTS`] in all, within the
    /// caller's deadline) when it fails as a replica fails: refused with UNAVAILABLE while
    /// draining or starting, unreachable, or its connection broken as the replica shut down.
    /// Each retry goes to another replica than the one that just failed, when there is one. More
    /// than one retry is needed because a channel whose connect failed while its replica was
    /// down answers its next call with that stale error, even after the replica is back. The
    /// calls this serves are idempotent, so a retry is safe even when a try did its work.
    pub async fn call<T, F, Fut>(&self, deadline: &Deadline, call: F) -> Result<T, Error>
    where
        F: Fn(TracedChannel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut last_failed: Option<SocketAddr> = None;
        for attempt in 1.. {
            let replica = match last_failed {
                None => self.pick().await?,
                Some(failed) => match self.pick_excluding(&[failed]).await {
                    Ok(other) => other,
                    Err(_) => self.pick().await?,
                },
            };
            let status = match call(replica.channel.clone()).await {
                Ok(response) => {
                    replica.report(None);
                    return Ok(response.into_inner());
                }
                Err(status) => status,
            };
            replica.report(Some(&status));
            if !is_replica_failure(&status) || deadline.expired() || attempt >= CALL_ATTEMPTS {
                return Err(failed(self.service, status, deadline));
            }
            tracing::info!(
                service = self.service,
                failed_on = %replica.address,
                attempt,
                %status,
                "a replica failed the call; trying again"
            );
            last_failed = Some(replica.address);
        }
        unreachable!("the loop returns by its last attempt")
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Replica>> {
        self.inner
            .read()
            .expect("the replica list is never poisoned; this is a bug")
    }
}

fn parse(service: &str, url: &str) -> anyhow::Result<Target> {
    let uri: Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("the {service} address `{url}` is not a URL: {e}"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "the {service} address `{url}` must start with http:// (services talk plain HTTP/2 inside the cluster)"
    );
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("the {service} address `{url}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .ok_or_else(|| anyhow::anyhow!("the {service} address `{url}` has no port"))?;
    Ok(Target { host, port })
}

/// Every address the targets resolve to now. A name that fails to resolve contributes nothing
/// (and is logged), so one bad name does not hide the others.
async fn resolve(targets: &[Target]) -> BTreeSet<SocketAddr> {
    let mut addresses = BTreeSet::new();
    for target in targets {
        match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
            Ok(found) => addresses.extend(found),
            Err(e) => tracing::warn!(host = %target.host, "cannot resolve: {e}"),
        }
    }
    addresses
}

/// Makes the list match `addresses`: known replicas keep their channels (and load), new ones
/// get a channel, gone ones are dropped. An empty resolution keeps the old list, since a DNS
/// hiccup should not take every replica away.
fn update(inner: &RwLock<Vec<Replica>>, addresses: &BTreeSet<SocketAddr>, dial: &Dial) {
    if addresses.is_empty() {
        return;
    }
    let mut replicas = inner
        .write()
        .expect("the replica list is never poisoned; this is a bug");
    let known: BTreeSet<SocketAddr> = replicas.iter().map(|r| r.address).collect();
    if &known == addresses {
        return;
    }
    replicas.retain(|r| addresses.contains(&r.address));
    for &address in addresses.difference(&known) {
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .expect("a socket address makes a valid URL; this is a bug")
            .connect_timeout(dial.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        replicas.push(Replica {
            address,
            channel: traced_with(endpoint.connect_lazy(), &dial.token),
            load: Arc::default(),
            accrual: Arc::default(),
        });
    }
    let now: Vec<SocketAddr> = replicas.iter().map(|r| r.address).collect();
    tracing::info!(replicas = ?now, "downstream replicas changed");
}

async fn refresh_while_used(
    inner: Weak<RwLock<Vec<Replica>>>,
    service: &'static str,
    targets: Arc<Vec<Target>>,
    dial: Dial,
    every: Duration,
) {
    loop {
        let addresses = resolve(&targets).await;
        let Some(list) = inner.upgrade() else { return };
        if addresses.is_empty() {
            tracing::warn!(
                service,
                "its name resolves to no address; keeping the last ones"
            );
        }
        update(&list, &addresses, &dial);
        drop(list);
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_resolves_to_its_addresses_and_the_list_follows_it() {
        let targets = [parse("decoder", "http://localhost:7").unwrap()];
        let found = resolve(&targets).await;
        assert!(found.contains(&"127.0.0.1:7".parse().unwrap()), "{found:?}");

        let inner = RwLock::new(Vec::new());
        let a: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:7".parse().unwrap();
        update(&inner, &[a, b].into(), &test_dial());
        inner.read().unwrap()[0].load.store(3, Ordering::Release);
        update(&inner, &[a].into(), &test_dial());
        let list = inner.read().unwrap();
        assert_eq!(list.iter().map(|r| r.address).collect::<Vec<_>>(), [a]);
        assert_eq!(
            list[0].load.load(Ordering::Acquire),
            3,
            "a kept replica keeps its load"
        );
        drop(list);
        update(&inner, &BTreeSet::new(), &test_dial());
        assert_eq!(
            inner.read().unwrap().len(),
            1,
            "an empty answer keeps the last list"
        );
    }

    fn test_dial() -> Dial {
        Dial {
            connect_timeout: Duration::from_secs(1),
            token: ServiceToken::default(),
        }
    }

    /// Two replicas known without DNS (their channels connect lazily, so nothing is dialled).
    fn two_replicas() -> (Replicas, SocketAddr, SocketAddr) {
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:7".parse().unwrap(),
            "127.0.0.2:7".parse().unwrap(),
        );
        let replicas = Replicas {
            service: "decoder",
            targets: Arc::new(vec![parse("decoder", "http://localhost:7").unwrap()]),
            inner: Arc::default(),
            next: Arc::default(),
            dial: test_dial(),
        };
        update(&replicas.inner, &[a, b].into(), &test_dial());
        (replicas, a, b)
    }

    #[tokio::test]
    async fn a_replica_failing_three_times_in_a_row_leaves_the_rotation_for_a_while() {
        let (replicas, a, b) = two_replicas();
        let refused = Status::unavailable("connection refused");
        let on_a = replicas.pick_excluding(&[b]).await.unwrap();
        on_a.report(Some(&refused));
        on_a.report(Some(&refused));
        on_a.report(None);
        on_a.report(Some(&refused));
        on_a.report(Some(&refused));
        drop(on_a);
        // A success in between restarted the count: still in the rotation.
        let picks: BTreeSet<SocketAddr> = [
            replicas.pick().await.unwrap().address,
            replicas.pick().await.unwrap().address,
        ]
        .into();
        assert_eq!(picks, [a, b].into());

        let on_a = replicas.pick_excluding(&[b]).await.unwrap();
        on_a.report(Some(&refused));
        drop(on_a);
        for _ in 0..4 {
            assert_eq!(replicas.pick().await.unwrap().address, b, "a is ejected");
        }
        // An answer that is the caller's fault is not the replica's.
        let on_b = replicas.pick().await.unwrap();
        for _ in 0..5 {
            on_b.report(Some(&Status::invalid_argument("bad")));
        }
        assert_eq!(replicas.pick().await.unwrap().address, b);
        // With every replica ejected, the one whose backoff ends first is still tried.
        for _ in 0..3 {
            on_b.report(Some(&refused));
        }
        assert_eq!(replicas.pick().await.unwrap().address, a);
        // And an excluded replica is never picked; with nothing left, UNAVAILABLE says why.
        let none = replicas.pick_excluding(&[a, b]).await.err().unwrap();
        assert!(none.to_string().contains("no replica is left"), "{none}");
    }

    #[test]
    fn transport_errors_and_unavailable_are_replica_failures_answers_are_not() {
        assert!(is_replica_failure(&Status::unavailable("draining")));
        assert!(!never_sent(&Status::cancelled("answered by the server")));
        assert!(is_replica_failure(&Status::cancelled(
            "operation was canceled"
        )));
        assert!(!is_replica_failure(&Status::internal("a bug, answered")));
        assert!(!is_replica_failure(&Status::resource_exhausted("full")));
        let broken = Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(is_replica_failure(&broken), "{broken:?}");
    }

    #[test]
    fn addresses_must_be_plain_http_with_a_port() {
        assert!(parse("decoder", "https://decoder:1").is_err());
        assert!(parse("decoder", "http://decoder").is_err());
        let t = parse("decoder", "http://[::1]:50053").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 50053));
    }
}

//! Client-side balancing over the replicas of a downstream service. A Kubernetes Service's
//! ClusterIP balances connections, and gRPC sends everything over one connection, so one
//! gateway would talk to one decoder. Instead the gateway resolves each service's name (a
//! headless Service resolves to every ready pod), keeps a lazily connected channel per address,
//! re-resolves periodically, and sends each piece of work to the replica with the least work in
//! flight. The servers close connections after a maximum age, so that nothing sticks to a
//! replica for ever.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use oneword_runtime::telemetry::{traced, TracedChannel};
use tonic::transport::{Endpoint, Uri};

use crate::Error;

/// The replicas of one service.
#[derive(Clone)]
pub struct Replicas {
    service: &'static str,
    targets: Arc<Vec<Target>>,
    inner: Arc<RwLock<Vec<Replica>>>,
    /// Where the search for the least loaded replica starts, so that ties rotate.
    next: Arc<AtomicUsize>,
    connect_timeout: Duration,
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
}

/// A channel to one replica, counted as that replica's load until dropped.
#[derive(Clone)]
pub struct Pinned {
    pub channel: TracedChannel,
    pub address: SocketAddr,
    _load: Arc<LoadGuard>,
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
        connect_timeout: Duration,
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
            connect_timeout,
        };
        tokio::spawn(refresh_while_used(
            Arc::downgrade(&replicas.inner),
            service,
            replicas.targets.clone(),
            connect_timeout,
            refresh,
        ));
        Ok(replicas)
    }

    /// The replica with the least work in flight (resolving the name first if nothing is known
    /// yet), or UNAVAILABLE naming the service when its name resolves to nothing.
    pub async fn pick(&self) -> Result<Pinned, Error> {
        if self.read().is_empty() {
            let addresses = resolve(&self.targets).await;
            update(&self.inner, &addresses, self.connect_timeout);
        }
        let replicas = self.read();
        if replicas.is_empty() {
            let names: Vec<String> = self
                .targets
                .iter()
                .map(|t| format!("{}:{}", t.host, t.port))
                .collect();
            return Err(Error::Downstream(
                self.service,
                tonic::Status::unavailable(format!("{} resolves to no address", names.join(","))),
            ));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let chosen = (0..replicas.len())
            .map(|i| &replicas[(start + i) % replicas.len()])
            .min_by_key(|r| r.load.load(Ordering::Acquire))
            .expect("the list is not empty; this is a bug");
        chosen.load.fetch_add(1, Ordering::AcqRel);
        Ok(Pinned {
            channel: chosen.channel.clone(),
            address: chosen.address,
            _load: Arc::new(LoadGuard(chosen.load.clone())),
        })
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
fn update(
    inner: &RwLock<Vec<Replica>>,
    addresses: &BTreeSet<SocketAddr>,
    connect_timeout: Duration,
) {
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
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        replicas.push(Replica {
            address,
            channel: traced(endpoint.connect_lazy()),
            load: Arc::default(),
        });
    }
    let now: Vec<SocketAddr> = replicas.iter().map(|r| r.address).collect();
    tracing::info!(replicas = ?now, "downstream replicas changed");
}

async fn refresh_while_used(
    inner: Weak<RwLock<Vec<Replica>>>,
    service: &'static str,
    targets: Arc<Vec<Target>>,
    connect_timeout: Duration,
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
        update(&list, &addresses, connect_timeout);
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
        update(&inner, &[a, b].into(), Duration::from_secs(1));
        inner.read().unwrap()[0].load.store(3, Ordering::Release);
        update(&inner, &[a].into(), Duration::from_secs(1));
        let list = inner.read().unwrap();
        assert_eq!(list.iter().map(|r| r.address).collect::<Vec<_>>(), [a]);
        assert_eq!(
            list[0].load.load(Ordering::Acquire),
            3,
            "a kept replica keeps its load"
        );
        drop(list);
        update(&inner, &BTreeSet::new(), Duration::from_secs(1));
        assert_eq!(
            inner.read().unwrap().len(),
            1,
            "an empty answer keeps the last list"
        );
    }

    #[test]
    fn addresses_must_be_plain_http_with_a_port() {
        assert!(parse("decoder", "https://decoder:1").is_err());
        assert!(parse("decoder", "http://decoder").is_err());
        let t = parse("decoder", "http://[::1]:50053").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 50053));
    }
}

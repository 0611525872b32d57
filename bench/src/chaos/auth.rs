//! The auth matrix on a deployment with an API key and a service token: every method of every
//! service called with no credential and with a wrong one of the right length, then random gRPC
//! paths and HTTP methods — all refused, and no metric family grown by more than two series.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;
use tonic::transport::Channel;
use tonic::Code;

use crate::fleet::{Fleet, Service, Setup, Shape};
use crate::{Rng, Row, Scale, Verdict};

const API_KEY: &str = "chaos-api-key-4f1c9a0e7b2d";
const SERVICE_TOKEN: &str = "chaos-service-token-8d3e6b1a5c07";

/// Every `/package.Service/Method` of oneword's schemas.
fn methods() -> anyhow::Result<Vec<(String, String)>> {
    let set = prost_types::FileDescriptorSet::decode(oneword_proto::FILE_DESCRIPTOR_SET)?;
    Ok(set
        .file
        .iter()
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                let full = format!("{}.{}", file.package(), service.name());
                service
                    .method
                    .iter()
                    .map(move |m| (full.clone(), format!("/{full}/{}", m.name())))
            })
        })
        .collect())
}

/// The process that serves `service` (the gateway fronts the collections).
fn server<'a>(fleet: &'a Fleet, service: &str) -> Option<&'a Service> {
    Some(match service {
        "oneword.gateway.v1.Gateway" | "oneword.index.v1.Collections" => &fleet.gateway,
        "oneword.tokenizer.v1.Tokenizer" => &fleet.tokenizers[0],
        "oneword.embedder.v1.Embedder" => &fleet.embedders[0],
        "oneword.decoder.v1.Decoder" => &fleet.decoders[0],
        _ => return None,
    })
}

/// One unary call of an empty message to `path` with `credential` in both headers; its code.
async fn call(channel: &Channel, path: &str, credential: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if grpc.ready().await.is_err() {
        return Code::Unavailable;
    }
    let mut request = tonic::Request::new(());
    if let Some(credential) = credential {
        let metadata = request.metadata_mut();
        if let Ok(bearer) = format!("Bearer {credential}").parse() {
            metadata.insert("authorization", bearer);
        }
        if let Ok(token) = credential.parse() {
            metadata.insert("x-oneword-service-token", token);
        }
    }
    let Ok(path) = path.parse() else {
        return Code::InvalidArgument;
    };
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.unary(request, path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn connect(address: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{address}"))?
        .timeout(Duration::from_secs(5))
        .connect()
        .await?)
}

/// Series per metric family on a metrics port.
async fn series(service: &Service) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut families = BTreeMap::new();
    for line in service.scrape().await?.lines() {
        // A histogram's buckets repeat each label set; its `_count` counts them once.
        let family = line.split_once('{').map(|(f, _)| f);
        if let Some(family) = family.filter(|f| !f.starts_with('#') && !f.ends_with("_bucket")) {
            *families.entry(family.to_string()).or_default() += 1;
        }
    }
    Ok(families)
}

pub async fn matrix(setup: &Setup, scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let shape = Shape {
        stateless_replicas: 1,
        decoders: 1,
        gateway_flags: vec!["--api-key".into(), API_KEY.into()],
        service_token: Some(SERVICE_TOKEN.into()),
        ..Default::default()
    };
    let fleet = Fleet::start(setup, &shape).await?;
    // The right length, the wrong bytes: a comparison that stops early would take longer here.
    let wrong = |real: &str| real.chars().rev().collect::<String>();
    let mut calls = 0;
    let mut admitted = Vec::new();
    for (service, path) in methods()? {
        let Some(process) = server(&fleet, &service) else {
            continue;
        };
        let channel = connect(process.grpc).await?;
        let real = if process.name.starts_with("gateway") {
            API_KEY
        } else {
            SERVICE_TOKEN
        };
        for credential in [None, Some(wrong(real))] {
            calls += 1;
            let code = call(&channel, &path, credential.as_deref()).await;
            if code != Code::Unauthenticated {
                admitted.push(format!(
                    "{path} on {} {credential:?}: {code:?}",
                    process.name
                ));
            }
        }
    }
    let mut rows = vec![Row::new(
        "auth",
        "every method of every service refused without the API key or service token, and with a wrong one",
        format!(
            "{calls} calls, {} not UNAUTHENTICATED{}",
            admitted.len(),
            if admitted.is_empty() { String::new() } else { format!(": {}", admitted.join("; ")) }
        ),
        Verdict::check(admitted.is_empty() && calls > 0),
    )];

    // Each known method may have made its own series; from here on nothing may.
    let mut before = Vec::new();
    for service in fleet.all() {
        before.push(series(service).await?);
    }
    let random = if scale.attack_internal_ports {
        10_000
    } else {
        1_000
    };
    let mut rng = Rng::new(5);
    let mut answered = Vec::new();
    let processes: Vec<&Service> = fleet.all().collect();
    let channels = {
        let mut channels = Vec::new();
        for p in &processes {
            channels.push(connect(p.grpc).await?);
        }
        channels
    };
    for i in 0..random {
        let p = rng.below(processes.len() as u64) as usize;
        let path = format!("/oneword.scan{}.v1.Scan/Probe{}", rng.below(1 << 20), i);
        let code = call(&channels[p], &path, None).await;
        if !matches!(code, Code::Unauthenticated | Code::Unimplemented) {
            answered.push(format!("{path}: {code:?}"));
        }
    }
    let http = reqwest::Client::new();
    let base = format!(
        "http://{}",
        fleet.gateway.http.expect("the gateway's HTTP port")
    );
    for _ in 0..random {
        let method = reqwest::Method::from_bytes(format!("SCAN{}", rng.below(1 << 20)).as_bytes())?;
        let path = format!("/scan{}", rng.below(1 << 20));
        let answer = http.request(method, format!("{base}{path}")).send().await?;
        if answer.status().is_success() {
            answered.push(format!("{path}: {}", answer.status()));
        }
    }
    rows.push(Row::new(
        "auth",
        format!(
            "{random} random gRPC paths (every port) and {random} random HTTP methods on random paths: all refused"
        ),
        if answered.is_empty() {
            "all refused".into()
        } else {
            answered.join("; ")
        },
        Verdict::check(answered.is_empty()),
    ));
    let mut grown = Vec::new();
    let mut most = 0;
    for (service, before) in fleet.all().zip(&before) {
        for (family, n) in series(service).await? {
            let added = n.saturating_sub(before.get(&family).copied().unwrap_or(0));
            most = most.max(added);
            if added > 2 {
                grown.push(format!("{} {family} +{added}", service.name));
            }
        }
    }
    rows.push(Row::new(
        "auth",
        "≤ 2 new series per metric family",
        if grown.is_empty() {
            format!("at most {most} new in any family")
        } else {
            grown.join("; ")
        },
        Verdict::check(grown.is_empty()),
    ));
    fleet.stop().await;
    Ok(rows)
}

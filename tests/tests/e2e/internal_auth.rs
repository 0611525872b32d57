//! Closed internals: with one service token set on every service, the internal services answer
//! only calls that carry it, while health and reflection (what probes and grpcurl use) stay
//! open; the index's own calls to the embedder carry it.

use oneword_e2e::{greedy, tiny_model, Cluster};
use oneword_proto::decoder::v1::{self as dec, decoder_client::DecoderClient};
use oneword_proto::embedder::v1::{self as emb, embedder_client::EmbedderClient};
use oneword_proto::index::v1::{self as ix, collections_client::CollectionsClient};
use oneword_proto::tokenizer::v1::{self as tok, tokenizer_client::TokenizerClient};
use oneword_runtime::telemetry::{traced_with, TracedChannel};
use oneword_runtime::ServiceToken;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::production::list_services_v1;

const TOKEN: &str = "e2e-service-token";

async fn channel(address: &str, token: &str) -> TracedChannel {
    let channel = Channel::from_shared(address.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    traced_with(channel, &token.parse::<ServiceToken>().unwrap())
}

/// One cheap call of the service's own API.
async fn call(service: &str, channel: TracedChannel) -> Result<(), Status> {
    match service {
        "tokenizer" => TokenizerClient::new(channel)
            .info(tok::InfoRequest {})
            .await
            .map(drop),
        "embedder" => EmbedderClient::new(channel)
            .info(emb::InfoRequest {})
            .await
            .map(drop),
        "decoder" | "baseline" => DecoderClient::new(channel)
            .info(dec::InfoRequest {})
            .await
            .map(drop),
        "index" => CollectionsClient::new(channel)
            .list(ix::ListRequest {})
            .await
            .map(drop),
        other => panic!("no call for {other}"),
    }
}

#[tokio::test]
async fn internal_services_answer_only_the_token_and_probes_without_it() {
    let cluster = Cluster::start_with_service_token(tiny_model(), TOKEN).await;
    let services = [
        (
            "tokenizer",
            &cluster.tokenizer,
            "oneword.tokenizer.v1.Tokenizer",
        ),
        (
            "embedder",
            &cluster.embedder,
            "oneword.embedder.v1.Embedder",
        ),
        ("decoder", &cluster.decoder, "oneword.decoder.v1.Decoder"),
        ("baseline", &cluster.baseline, "oneword.decoder.v1.Decoder"),
        ("index", &cluster.index, "oneword.index.v1.Collections"),
    ];
    for (service, running, name) in services {
        for given in ["", "guessed-token", &TOKEN[..TOKEN.len() - 1]] {
            let refused = call(service, channel(&running.address, given).await)
                .await
                .expect_err(service);
            assert_eq!(refused.code(), Code::Unauthenticated, "{service} {given:?}");
            let message = refused.message();
            assert!(message.contains("x-oneword-service-token"), "{message}");
            assert!(given.is_empty() || !message.contains(given), "{message}");
        }
        call(service, channel(&running.address, TOKEN).await)
            .await
            .unwrap_or_else(|e| panic!("{service} with the token: {e}"));

        // Probes and grpcurl carry no token.
        let mut health = HealthClient::new(channel(&running.address, "").await);
        for probed in ["", name] {
            let status = health
                .check(HealthCheckRequest {
                    service: probed.into(),
                })
                .await
                .unwrap_or_else(|e| panic!("{service} health {probed:?}: {e}"));
            assert_eq!(status.into_inner().status, ServingStatus::Serving as i32);
        }
        let listed = list_services_v1(&running.address).await;
        assert!(listed.contains(&name.to_string()), "{service}: {listed:?}");
    }
}

#[tokio::test]
async fn the_index_sends_the_token_to_the_embedder() {
    let cluster = Cluster::start_with_service_token(tiny_model(), TOKEN).await;
    let mut index = CollectionsClient::new(channel(&cluster.index.address, TOKEN).await);
    // A collection with a text model asks the embedder for the model's dimension.
    let created = index
        .create(ix::CreateRequest {
            name: "notes".into(),
            model: "default".into(),
            ..Default::default()
        })
        .await
        .expect("the embedder answers the index")
        .into_inner();
    assert_eq!(created.dimension, 16);
}

#[tokio::test]
async fn the_gateway_serves_clients_without_the_token_and_passes_it_on() {
    let cluster = Cluster::start_with_service_token(tiny_model(), TOKEN).await;
    let reply = cluster
        .gateway()
        .await
        .generate(greedy("Once upon a time", 4))
        .await
        .expect("generation through the gateway")
        .into_inner();
    assert!(!reply.completions[0].token_ids.is_empty());
    let created = cluster
        .collections()
        .await
        .create(ix::CreateRequest {
            name: "notes".into(),
            model: "default".into(),
            ..Default::default()
        })
        .await
        .expect("collections through the gateway")
        .into_inner();
    assert_eq!(created.dimension, 16);
}

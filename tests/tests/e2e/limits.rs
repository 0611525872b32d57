//! The ports against greedy and slow clients: every size limit holds at exactly +1 byte, gzip
//! that inflates past a limit included, and the HTTP port closes connections whose headers or
//! body trickle in, and caps how many are open.

use std::time::Duration;

use oneword_e2e::{tiny_model, Cluster};
use oneword_proto::gateway::v1 as pb;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::codec::CompressionEncoding;

const PROMPT_BYTES: usize = 4096;

async fn cluster() -> Cluster {
    Cluster::start_configured(
        tiny_model(),
        |_| {},
        |g| {
            g.max_prompt_bytes = PROMPT_BYTES;
            g.http_header_timeout_secs = 1;
            g.http_body_timeout_secs = 1;
            g.http_max_connections = 4;
        },
    )
    .await
}

fn with_prompt_bytes(n: usize) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: "a".repeat(n),
        max_new_tokens: Some(1),
        ..Default::default()
    }
}

/// A prompt of exactly `max_prompt_bytes` passes the size check; one byte more is refused,
/// naming the field and the limit, whether the message travels plain or gzipped.
#[tokio::test]
async fn the_prompt_limit_holds_at_one_byte_over_plain_and_gzipped() {
    let cluster = cluster().await;
    for gzip in [false, true] {
        let mut client = cluster.gateway().await;
        if gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let at = client
            .tokenize(pb::TokenizeRequest {
                text: "a".repeat(PROMPT_BYTES),
                allow_special: false,
            })
            .await;
        assert!(at.is_ok(), "{at:?}");
        let over = client
            .generate(with_prompt_bytes(PROMPT_BYTES + 1))
            .await
            .unwrap_err();
        assert_eq!(over.code(), tonic::Code::InvalidArgument, "{over:?}");
        assert!(over.message().contains("`prompt`"), "{over:?}");
        assert!(
            over.message().contains(&PROMPT_BYTES.to_string()),
            "{over:?}"
        );
    }
}

/// The message limit (`max_prompt_bytes` + 1 MiB for the other fields) holds at +1 byte of the
/// decoded message, also when gzip makes the message on the wire a few kilobytes.
#[tokio::test]
async fn the_message_limit_holds_at_one_byte_over_even_when_gzip_inflates_past_it() {
    let cluster = cluster().await;
    let limit = PROMPT_BYTES + (1 << 20);
    // A prompt field sized so that the whole message is exactly `bytes` long.
    let sized = |bytes: usize| {
        let mut n = bytes - 8;
        while with_prompt_bytes(n).encoded_len() < bytes {
            n += 1;
        }
        while with_prompt_bytes(n).encoded_len() > bytes {
            n -= 1;
        }
        let request = with_prompt_bytes(n);
        assert_eq!(
            request.encoded_len(),
            bytes,
            "cannot size the message exactly"
        );
        request
    };
    for gzip in [false, true] {
        let mut client = cluster
            .gateway()
            .await
            .max_encoding_message_size(usize::MAX);
        if gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        // At the limit the message is read, and the prompt check refuses it.
        let at = client.generate(sized(limit)).await.unwrap_err();
        assert_eq!(at.code(), tonic::Code::InvalidArgument, "{at:?}");
        // tonic's answers: OUT_OF_RANGE for a plain message over the limit, RESOURCE_EXHAUSTED
        // for a gzipped one, whose inflating stops at the limit.
        let over = client.generate(sized(limit + 1)).await.unwrap_err();
        let expected = if gzip {
            tonic::Code::ResourceExhausted
        } else {
            tonic::Code::OutOfRange
        };
        assert_eq!(over.code(), expected, "gzip {gzip}: {over:?}");
        assert!(over.message().contains(&limit.to_string()), "{over:?}");
    }
}

/// Reads what the server sends until it closes the connection, for at most `limit`: `None`
/// when it kept it open that long.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&seen).into_owned())
}

fn http_address(cluster: &Cluster) -> String {
    cluster
        .gateway
        .http
        .as_ref()
        .unwrap()
        .trim_start_matches("http://")
        .to_string()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let cluster = cluster().await;
    let mut slow = TcpStream::connect(http_address(&cluster)).await.unwrap();
    slow.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: oneword\r\n")
        .await
        .unwrap();
    // The header timeout is 1 s here (10 s by default).
    let answer = until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.is_some(), "the connection was still open after 10 s");
}

#[tokio::test]
async fn a_body_that_trickles_in_is_refused_once_its_time_is_up() {
    let cluster = cluster().await;
    let mut slow = TcpStream::connect(http_address(&cluster)).await.unwrap();
    slow.write_all(
        b"POST /v1/completions HTTP/1.1\r\nHost: oneword\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\": \"",
    )
    .await
    .unwrap();
    // A byte now and then, never the whole body.
    let trickle = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if slow.write_all(b"a").await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let answer = until_closed(&mut slow, Duration::from_secs(10))
        .await
        .expect("the connection was still open");
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer:?}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_room_comes_back() {
    let cluster = cluster().await;
    let address = http_address(&cluster);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut open = TcpStream::connect(&address).await.unwrap();
        // Half a request: the connection is the server's until its header timeout.
        open.write_all(b"GET /v1/models HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(open);
    }
    let mut extra = TcpStream::connect(&address).await.unwrap();
    let _ = extra
        .write_all(b"GET /v1/models HTTP/1.1\r\nHost: oneword\r\n\r\n")
        .await;
    let answer = until_closed(&mut extra, Duration::from_secs(10)).await;
    assert_eq!(
        answer.as_deref(),
        Some(""),
        "the fifth connection was served"
    );
    drop(held);
    // The held connections' slots come back once the server sees them closed.
    let models = format!("http://{address}/v1/models");
    let mut served = false;
    for _ in 0..100 {
        if reqwest::get(&models)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served,
        "no room came back after the held connections closed"
    );
}

//! Collections end to end: texts embedded by the embedder, stored and searched by the index,
//! through the gateway's front and the CLI; and the real all-MiniLM-L6-v2 finding the verses
//! about neighbours in the bundled corpus.

use oneword_e2e::cli::oneword;
use oneword_e2e::{minilm, refused, repo, start, tiny_model, until, Cluster};
use oneword_proto::embedder::v1 as emb;
use oneword_proto::gateway::v1 as gw;
use oneword_proto::index::v1 as ix;
use oneword_proto::tensor::wire_to_f32;
use tonic::Code;

fn text_point(id: &str, text: &str, payload: &str) -> ix::Point {
    ix::Point {
        id: id.into(),
        content: Some(ix::point::Content::Text(text.into())),
        payload: payload.into(),
    }
}

fn by_text(collection: &str, text: &str, top_k: u32) -> ix::SearchRequest {
    ix::SearchRequest {
        collection: collection.into(),
        query: Some(ix::search_request::Query::Text(text.into())),
        top_k: Some(top_k),
        with_payload: true,
        ..Default::default()
    }
}

const NOTES: [(&str, &str, &str); 4] = [
    (
        "a",
        "The cat sat on the mat.",
        r#"{"kind": "animal", "year": 1990}"#,
    ),
    (
        "b",
        "A feline rested upon the rug.",
        r#"{"kind": "animal", "year": 2005}"#,
    ),
    (
        "c",
        "Stock markets fell sharply on Tuesday.",
        r#"{"kind": "money", "year": 2020}"#,
    ),
    (
        "d",
        "In the beginning God created the heaven and the earth.",
        r#"{"kind": "verse"}"#,
    ),
];

#[tokio::test]
async fn the_gateway_embeds_stores_and_searches_texts() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut index = cluster.collections().await;
    let created = index
        .create(ix::CreateRequest {
            name: "notes".into(),
            model: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.dimension, 16);
    assert_eq!(created.backend, "sqlite");
    assert_eq!(
        created.model,
        oneword_e2e::tiny_text_model().display().to_string()
    );

    let points = NOTES
        .iter()
        .map(|(id, t, p)| text_point(id, t, p))
        .collect();
    let upserted = index
        .upsert(ix::UpsertRequest {
            collection: "notes".into(),
            points,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(upserted.upserted, 4);
    assert!(upserted.embedded_tokens > 20);

    // A stored text finds itself first, at cosine 1, and the scores are the cosines of the
    // gateway's own Embed vectors.
    let found = index
        .search(by_text("notes", NOTES[2].1, 4))
        .await
        .unwrap()
        .into_inner();
    assert!(found.exact);
    assert_eq!(found.candidates_scanned, 4);
    assert_eq!(found.hits[0].id, "c");
    assert!((found.hits[0].score - 1.0).abs() < 1e-5);
    assert_eq!(found.hits[0].text, NOTES[2].1);
    let payload: serde_json::Value = serde_json::from_str(&found.hits[0].payload).unwrap();
    assert_eq!(payload["kind"], "money");
    let texts: Vec<String> = NOTES.iter().map(|n| n.1.to_string()).collect();
    let vectors = cluster
        .gateway()
        .await
        .embed(gw::EmbedRequest {
            texts,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let values = wire_to_f32(vectors.embeddings.as_ref().unwrap()).unwrap();
    let row = |i: usize| &values[i * 16..(i + 1) * 16];
    for hit in &found.hits {
        let i = NOTES.iter().position(|n| n.0 == hit.id).unwrap();
        let cosine: f32 = row(2).iter().zip(row(i)).map(|(a, b)| a * b).sum();
        assert!(
            (hit.score - cosine).abs() < 1e-4,
            "{}: {} vs {cosine}",
            hit.id,
            hit.score
        );
    }

    // A filter, by a stored point, retrieve, delete.
    let animals = ix::SearchRequest {
        filter: Some(ix::Filter {
            must: vec![ix::Condition {
                key: "kind".into(),
                test: Some(ix::condition::Test::Match(ix::Match {
                    value: Some(ix::r#match::Value::Keyword("animal".into())),
                })),
            }],
            ..Default::default()
        }),
        ..by_text("notes", NOTES[3].1, 10)
    };
    let found = index.search(animals).await.unwrap().into_inner();
    let mut ids: Vec<&str> = found.hits.iter().map(|h| h.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    let near_a = ix::SearchRequest {
        query: Some(ix::search_request::Query::Id("a".into())),
        ..by_text("notes", "", 10)
    };
    let found = index.search(near_a).await.unwrap().into_inner();
    assert_eq!(found.hits.len(), 3, "the point itself is left out");
    let got = index
        .retrieve(ix::RetrieveRequest {
            collection: "notes".into(),
            ids: vec!["d".into(), "zz".into(), "a".into()],
            with_payload: true,
            with_vector: true,
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = got.points.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["d", "a"]);
    assert_eq!(got.points[1].vector.len(), 16);
    let deleted = index
        .delete(ix::DeleteRequest {
            collection: "notes".into(),
            selector: Some(ix::delete_request::Selector::Ids(ix::PointIds {
                ids: vec!["a".into(), "nope".into()],
            })),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, 1);

    // Bad input is named; nothing else changes.
    refused(
        index.search(by_text("nowhere", "x", 3)).await,
        Code::NotFound,
        "nowhere",
    );
    refused(
        index
            .create(ix::CreateRequest {
                name: "notes".into(),
                model: "default".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "notes",
    );
    let bad_filter = ix::SearchRequest {
        filter: Some(ix::Filter {
            must: vec![ix::Condition {
                key: String::new(),
                test: None,
            }],
            ..Default::default()
        }),
        ..by_text("notes", "x", 3)
    };
    refused(
        index.search(bad_filter).await,
        Code::InvalidArgument,
        "filter.must[0]",
    );
    refused(
        index.search(by_text("notes", "x", 0)).await,
        Code::InvalidArgument,
        "top_k",
    );
    let list = index.list(ix::ListRequest {}).await.unwrap().into_inner();
    assert_eq!(list.collections.len(), 1);
    assert_eq!(list.collections[0].points, 3);
    let dropped = index
        .drop(ix::CollectionRef {
            name: "notes".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dropped.points, 3);
}

#[tokio::test]
async fn the_cli_creates_upserts_and_searches_a_collection() {
    let cluster = Cluster::start(tiny_model()).await;
    let gateway = cluster.gateway.address.as_str();
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("notes.txt");
    let text: String = NOTES.iter().map(|n| format!("{}\n\n", n.1)).collect();
    std::fs::write(&lines, text).unwrap();
    let file = lines.to_str().unwrap();

    let (out, _) = oneword(gateway, &["collection", "create", "notes"])
        .await
        .ok();
    assert!(out.starts_with("notes: 0 points, 16 dimensions"), "{out}");
    let (out, _) = oneword(
        gateway,
        &["upsert", "notes", "--file", file, "--lines", "--batch", "3"],
    )
    .await
    .ok();
    assert!(out.starts_with("upserted 4 points into notes"), "{out}");
    // Ids are line numbers (blank lines skipped but counted): 1, 3, 5, 7.
    let (out, err) = oneword(gateway, &["search", "notes", NOTES[1].1, "--top", "2"])
        .await
        .ok();
    let first = out.lines().nth(1).unwrap();
    assert!(first.contains(" 3 ") && first.contains(NOTES[1].1), "{out}");
    assert!(
        err.contains("2 hits; exact search over 4 candidates"),
        "{err}"
    );
    let filtered = oneword(
        gateway,
        &[
            "--json",
            "search",
            "notes",
            "anything",
            "--filter",
            r#"{"must": [{"key": "line", "range": {"gte": 5}}]}"#,
        ],
    )
    .await
    .json_lines();
    let mut ids: Vec<String> = filtered[0]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["5", "7"]);

    let (out, _) = oneword(gateway, &["collection", "list"]).await.ok();
    assert!(out.starts_with("notes: 4 points"), "{out}");
    let (out, _) = oneword(gateway, &["collection", "create", "notes", "--replace"])
        .await
        .ok();
    assert!(out.starts_with("notes: 0 points"), "{out}");
    let err = oneword(gateway, &["collection", "create", "notes"])
        .await
        .failed();
    assert!(err.to_string().contains("notes"), "{err}");
    let err = oneword(
        gateway,
        &["search", "notes", "x", "--filter", "{\"must\": 3}"],
    )
    .await
    .failed();
    assert!(err.to_string().contains("--filter"), "{err}");
    let (out, _) = oneword(gateway, &["collection", "drop", "notes"])
        .await
        .ok();
    assert_eq!(out, "dropped notes and its 0 points\n");
}

#[tokio::test]
async fn minilm_finds_the_verses_about_neighbours() {
    let mut embedder_config =
        oneword_embedder::Config::for_model(tiny_model().display().to_string());
    embedder_config.text_model = minilm().display().to_string();
    let embedder = start(false, |l, s| {
        oneword_embedder::run(embedder_config, l, until(s))
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let mut index_config = oneword_index::Config::for_data_dir(data.path());
    index_config.embedder = embedder.address.clone();
    let index = start(false, |l, s| oneword_index::run(index_config, l, until(s))).await;
    let mut client = ix::collections_client::CollectionsClient::connect(index.address.clone())
        .await
        .unwrap();
    client
        .create(ix::CreateRequest {
            name: "verses".into(),
            model: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Every verse that speaks of a neighbour, and every 12th of the others: about 560.
    let corpus = std::fs::read_to_string(repo().join("crates/ngram/corpus/kjv.txt")).unwrap();
    let verses: Vec<(usize, &str)> = corpus
        .lines()
        .enumerate()
        .filter(|(i, v)| v.contains("neighbour") || i % 12 == 0)
        .collect();
    let about = verses
        .iter()
        .filter(|(_, v)| v.contains("neighbour"))
        .count();
    assert!(about >= 20, "{about} verses about neighbours");
    for chunk in verses.chunks(256) {
        let points = chunk
            .iter()
            .map(|(i, v)| text_point(&(i + 1).to_string(), v, ""))
            .collect();
        client
            .upsert(ix::UpsertRequest {
                collection: "verses".into(),
                points,
            })
            .await
            .unwrap();
    }
    let found = client
        .search(by_text("verses", "love thy neighbour", 5))
        .await
        .unwrap()
        .into_inner();
    for hit in &found.hits {
        assert!(hit.text.contains("neighbour"), "{:?}", found.hits);
    }
    // The same model embedded the query: the embedder's vector for it scores the same.
    let mut embedder_client =
        emb::embedder_client::EmbedderClient::connect(embedder.address.clone())
            .await
            .unwrap();
    let query = embedder_client
        .embed_text(emb::EmbedTextRequest {
            texts: vec!["love thy neighbour".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let vector = wire_to_f32(query.embeddings.as_ref().unwrap()).unwrap();
    let by_vector = client
        .search(ix::SearchRequest {
            query: Some(ix::search_request::Query::Vector(ix::Vector {
                values: vector,
            })),
            ..by_text("verses", "", 5)
        })
        .await
        .unwrap()
        .into_inner();
    let ids = |r: &ix::SearchResponse| r.hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&by_vector), ids(&found));
}

async fn rest(
    cluster: &Cluster,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", cluster.gateway.http.as_ref().unwrap());
    let response = reqwest::Client::new()
        .request(method, url)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn collections_over_rest_in_qdrants_shape() {
    use reqwest::Method;
    use serde_json::json;
    let cluster = Cluster::start(tiny_model()).await;
    let (status, body) = rest(
        &cluster,
        Method::PUT,
        "/v1/collections/rest",
        json!({"vectors": {"size": 3, "distance": "Euclid"}}),
    )
    .await;
    assert_eq!((status, &body["result"]), (200, &json!(true)), "{body}");
    let points = json!({"points": [
        {"id": 1, "vector": [0.0, 0.0, 1.0], "payload": {"color": "red"}},
        {"id": "two", "vector": [0.0, 1.0, 0.0], "payload": {"color": "blue", "n": 5}},
        {"id": 3, "vector": [1.0, 0.0, 0.0]},
    ]});
    let (status, body) = rest(
        &cluster,
        Method::PUT,
        "/v1/collections/rest/points?wait=true",
        points,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"], "completed");

    let search = |body| {
        rest(
            &cluster,
            Method::POST,
            "/v1/collections/rest/points/search",
            body,
        )
    };
    let (status, body) =
        search(json!({"vector": [0.0, 0.0, 0.9], "limit": 2, "with_payload": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"][0]["id"], 1);
    assert!(
        (body["result"][0]["score"].as_f64().unwrap() - 0.1).abs() < 1e-5,
        "{body}"
    );
    assert_eq!(body["result"][0]["payload"]["color"], "red");
    assert_eq!(body["result"].as_array().unwrap().len(), 2);
    for filter in [
        json!({"must": [{"key": "color", "match": {"value": "blue"}}]}),
        json!({"must": [{"key": "color", "match": {"any": ["blue", "green"]}}]}),
        json!({"must": [{"key": "n", "range": {"gte": 5}}]}),
        json!({"must_not": [{"key": "color", "match": {"value": "red"}}], "must": [{"must": [{"key": "n", "range": {"lt": 10}}]}]}),
    ] {
        let (status, body) = search(json!({"vector": [0.0, 0.0, 1.0], "filter": filter})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["result"],
            json!([{"id": "two", "version": 0, "score": body["result"][0]["score"]}]),
            "{filter}"
        );
    }
    let (status, body) =
        search(json!({"vector": [0.0, 0.0, 1.0], "filter": {"must": [{"key": "color"}]}})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["status"]["error"]
            .as_str()
            .unwrap()
            .contains("filter.must[0]"),
        "{body}"
    );
    // A batch answers each search as it would alone, in order; a bad one is named by index.
    let batch = |body| {
        rest(
            &cluster,
            Method::POST,
            "/v1/collections/rest/points/search/batch",
            body,
        )
    };
    let one = json!({"vector": [0.0, 0.0, 0.9], "limit": 2, "with_payload": true});
    let other = json!({"vector": [1.0, 0.0, 0.0], "limit": 1, "params": {"exact": true}});
    let (_, alone) = search(one.clone()).await;
    let (status, body) = batch(json!({"searches": [one, other]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"][0], alone["result"], "{body}");
    assert_eq!(body["result"][1][0]["id"], 3, "{body}");
    let (status, body) =
        batch(json!({"searches": [{"vector": [1.0, 0.0, 0.0]}, {"limit": 1}]})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["status"]["error"]
            .as_str()
            .unwrap()
            .contains("`searches[1]`"),
        "{body}"
    );

    let (status, _) = rest(
        &cluster,
        Method::POST,
        "/v1/collections/rest/points/delete",
        json!({"points": [1]}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = rest(&cluster, Method::GET, "/v1/collections/rest", json!(null)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["points_count"], 2);
    assert_eq!(
        body["result"]["config"]["params"]["vectors"],
        json!({"size": 3, "distance": "Euclid"})
    );

    // A collection of texts (an extension): created with the default text model, searched by text.
    let (status, _) = rest(&cluster, Method::PUT, "/v1/collections/notes", json!({})).await;
    assert_eq!(status, 200);
    let notes = json!({"points": NOTES.iter().enumerate().map(|(i, n)| json!({"id": i, "text": n.1})).collect::<Vec<_>>()});
    let (status, body) = rest(&cluster, Method::PUT, "/v1/collections/notes/points", notes).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = rest(
        &cluster,
        Method::POST,
        "/v1/collections/notes/points/search",
        json!({"text": NOTES[3].1, "limit": 1, "with_payload": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"][0]["id"], 3);
    assert_eq!(body["result"][0]["payload"]["text"], NOTES[3].1);

    let (status, body) = rest(&cluster, Method::GET, "/v1/collections", json!(null)).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["collections"].as_array().unwrap().len(), 2);
    let (status, body) = rest(
        &cluster,
        Method::PUT,
        "/v1/collections/rest",
        json!({"vectors": {"size": 3}}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = rest(
        &cluster,
        Method::GET,
        "/v1/collections/nowhere",
        json!(null),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["status"]["error"]
        .as_str()
        .unwrap()
        .contains("nowhere"));
    let (status, _) = rest(
        &cluster,
        Method::DELETE,
        "/v1/collections/rest",
        json!(null),
    )
    .await;
    assert_eq!(status, 200);

    // Metrics name the routes by their templates, not by the collection a caller chose.
    let metrics = reqwest::get(&cluster.gateway.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("/v1/collections/{name}/points/search"),
        "{metrics}"
    );
    assert!(!metrics.contains("/v1/collections/rest"), "{metrics}");
}

/// A snapshot holds one collection, consistently, and a fresh index serves it as it was.
#[tokio::test]
async fn a_snapshot_is_served_by_a_fresh_index() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut index = cluster.collections().await;
    for name in ["kept", "other"] {
        index
            .create(ix::CreateRequest {
                name: name.into(),
                model: "default".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let points = NOTES
            .iter()
            .map(|(id, t, p)| text_point(id, t, p))
            .collect();
        index
            .upsert(ix::UpsertRequest {
                collection: name.into(),
                points,
            })
            .await
            .unwrap();
    }
    let snapshot = index
        .snapshot(ix::CollectionRef {
            name: "kept".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snapshot.points, 4);
    assert!(snapshot.path.ends_with(".sqlite"), "{}", snapshot.path);
    refused(
        index
            .snapshot(ix::CollectionRef {
                name: "nowhere".into(),
            })
            .await,
        Code::NotFound,
        "nowhere",
    );
    let before = index
        .search(by_text("kept", NOTES[0].1, 4))
        .await
        .unwrap()
        .into_inner();

    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&snapshot.path, restored.path().join("index.sqlite")).unwrap();
    let mut config = oneword_index::Config::for_data_dir(restored.path());
    config.embedder = cluster.embedder.address.clone();
    let fresh = start(false, |l, s| oneword_index::run(config, l, until(s))).await;
    let mut fresh = ix::collections_client::CollectionsClient::connect(fresh.address.clone())
        .await
        .unwrap();
    let list = fresh.list(ix::ListRequest {}).await.unwrap().into_inner();
    let names: Vec<&str> = list.collections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["kept"]);
    assert_eq!(list.collections[0].points, 4);
    let after = fresh
        .search(by_text("kept", NOTES[0].1, 4))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.hits, before.hits);
}

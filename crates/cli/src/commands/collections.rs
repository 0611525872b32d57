//! Collections through the gateway: create, list, get and drop them; upsert points from a file
//! in durable batches; search by text, vector or stored point.

use std::io::BufRead;
use std::time::Instant;

use oneword_proto::index::v1 as ix;
use serde_json::Value;

use super::{answer, Ctx, Output};
use crate::client::{request, Collections};
use crate::config::{
    CollectionAction, CollectionArgs, CreateArgs, IndexArg, MetricArg, SearchArgs, UpsertArgs,
};
use crate::error::Error;
use crate::json::{from_json, to_line};

pub async fn collection(
    index: &mut Collections,
    ctx: Ctx,
    args: CollectionArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    match args.action {
        CollectionAction::Create(args) => {
            let info = create(index, ctx, args).await?;
            answer(io, ctx, &info, describe)
        }
        CollectionAction::List => {
            let list = index
                .list(request(ix::ListRequest {}, ctx.timeout))
                .await?
                .into_inner();
            answer(io, ctx, &list, |list| {
                if list.collections.is_empty() {
                    return "no collections\n".into();
                }
                list.collections.iter().map(describe).collect()
            })
        }
        CollectionAction::Get { name } => {
            let info = index
                .get(request(ix::CollectionRef { name }, ctx.timeout))
                .await?
                .into_inner();
            answer(io, ctx, &info, describe)
        }
        CollectionAction::Snapshot { name } => {
            let snapshot = index
                .snapshot(request(
                    ix::CollectionRef { name: name.clone() },
                    ctx.timeout,
                ))
                .await?
                .into_inner();
            answer(io, ctx, &snapshot, |s| {
                format!(
                    "{name}: {} points copied to {} (on the index's disk)\n",
                    s.points, s.path
                )
            })
        }
        CollectionAction::Drop { name } => {
            let dropped = index
                .drop(request(
                    ix::CollectionRef { name: name.clone() },
                    ctx.timeout,
                ))
                .await?
                .into_inner();
            answer(io, ctx, &dropped, |d| {
                format!("dropped {name} and its {} points\n", d.points)
            })
        }
    }
}

async fn create(
    index: &mut Collections,
    ctx: Ctx,
    args: CreateArgs,
) -> Result<ix::CollectionInfo, Error> {
    if args.replace {
        let name = ix::CollectionRef {
            name: args.name.clone(),
        };
        match index.drop(request(name, ctx.timeout)).await {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(status.into()),
        }
    }
    // Without a model or a dimension, the collection holds texts of the gateway's text model.
    let model = match (&args.model, args.dimension) {
        (Some(model), _) => model.clone(),
        (None, Some(_)) => String::new(),
        (None, None) => "default".into(),
    };
    let message = ix::CreateRequest {
        name: args.name,
        model,
        dimension: args.dimension,
        metric: match args.metric {
            MetricArg::Cosine => ix::Metric::Cosine,
            MetricArg::Dot => ix::Metric::Dot,
            MetricArg::L2 => ix::Metric::L2,
        } as i32,
        index: match args.index {
            IndexArg::Auto => ix::IndexKind::Auto,
            IndexArg::Exact => ix::IndexKind::Exact,
            IndexArg::Hnsw => ix::IndexKind::Hnsw,
        } as i32,
        hnsw: Some(ix::HnswParams {
            m: args.m,
            ef_construction: args.ef_construction,
            ef_search: None,
        }),
    };
    Ok(index
        .create(request(message, ctx.timeout))
        .await?
        .into_inner())
}

/// One line about a collection.
fn describe(c: &ix::CollectionInfo) -> String {
    let metric = match ix::Metric::try_from(c.metric) {
        Ok(ix::Metric::Dot) => "dot",
        Ok(ix::Metric::L2) => "l2",
        _ => "cosine",
    };
    let searched = match ix::IndexKind::try_from(c.searched_with) {
        Ok(ix::IndexKind::Hnsw) => "hnsw",
        _ => "exact",
    };
    let model = if c.model.is_empty() {
        "vectors".to_string()
    } else {
        c.model.clone()
    };
    format!(
        "{}: {} points, {} dimensions, {model}, {metric}, searched {searched}, stored in {}\n",
        c.name, c.points, c.dimension, c.backend
    )
}

pub async fn upsert(
    index: &mut Collections,
    ctx: Ctx,
    args: UpsertArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let points = read_points(&args)?;
    let total = points.len();
    let batch = args.batch.max(1);
    let started = Instant::now();
    let mut done = ix::UpsertResponse::default();
    for chunk in points.chunks(batch) {
        let message = ix::UpsertRequest {
            collection: args.collection.clone(),
            points: chunk.to_vec(),
        };
        let answer = index
            .upsert(request(message, ctx.timeout))
            .await?
            .into_inner();
        done.upserted += answer.upserted;
        done.embedded_tokens += answer.embedded_tokens;
        if io.err_style.color {
            // A terminal: one line, redrawn.
            let rate = done.upserted as f64 / started.elapsed().as_secs_f64().max(1e-9);
            write!(
                io.err,
                "\rupserted {}/{total} points ({rate:.0} points/s)",
                done.upserted
            )?;
            io.err.flush()?;
        }
    }
    if io.err_style.color {
        writeln!(io.err)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    answer(io, ctx, &done, |d| {
        format!(
            "upserted {} points into {} in {seconds:.1} s ({:.0} points/s, {} tokens embedded)\n",
            d.upserted,
            args.collection,
            d.upserted as f64 / seconds.max(1e-9),
            d.embedded_tokens
        )
    })
}

/// The points of `--file`: JSON lines, or texts one per line with `--lines`.
fn read_points(args: &UpsertArgs) -> Result<Vec<ix::Point>, Error> {
    let reader: Box<dyn BufRead> = if args.file == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|e| Error::Usage(format!("cannot read --file {}: {e}", args.file)))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut points = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let point = if args.lines {
            ix::Point {
                id: number.to_string(),
                content: Some(ix::point::Content::Text(line)),
                payload: format!("{{\"line\":{number}}}"),
            }
        } else {
            json_point(&line).map_err(|e| Error::Usage(format!("{}:{number}: {e}", args.file)))?
        };
        points.push(point);
    }
    Ok(points)
}

/// One JSON line: `{"id": "…" | 7, "text": "…" | "vector": [...], "payload": {...}}`.
fn json_point(line: &str) -> Result<ix::Point, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let id = match &value["id"] {
        Value::String(id) => id.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("each point needs an \"id\" (a string or a number)".into()),
    };
    let content = match (&value["text"], &value["vector"]) {
        (Value::String(text), Value::Null) => ix::point::Content::Text(text.clone()),
        (Value::Null, Value::Array(values)) => ix::point::Content::Vector(ix::Vector {
            values: values
                .iter()
                .map(|v| v.as_f64().map(|x| x as f32))
                .collect::<Option<_>>()
                .ok_or("\"vector\" must be an array of numbers")?,
        }),
        _ => {
            return Err("each point needs a \"text\" string or a \"vector\" array, not both".into())
        }
    };
    let payload = match &value["payload"] {
        Value::Null => String::new(),
        Value::Object(_) => value["payload"].to_string(),
        _ => return Err("\"payload\" must be a JSON object".into()),
    };
    Ok(ix::Point {
        id,
        content: Some(content),
        payload,
    })
}

pub async fn search(
    index: &mut Collections,
    ctx: Ctx,
    args: SearchArgs,
    io: &mut Output<'_>,
) -> Result<(), Error> {
    let query = match (args.query, args.id, args.vector) {
        (Some(text), _, _) => ix::search_request::Query::Text(super::input(text)?),
        (None, Some(id), _) => ix::search_request::Query::Id(id),
        (None, None, Some(vector)) => {
            let values: Vec<f32> = serde_json::from_str(&vector).map_err(|e| {
                Error::Usage(format!("--vector is not a JSON array of numbers: {e}"))
            })?;
            ix::search_request::Query::Vector(ix::Vector { values })
        }
        (None, None, None) => return Err(Error::Usage("give a query, --id or --vector".into())),
    };
    let filter = match &args.filter {
        Some(text) => Some(
            from_json::<ix::Filter>(text)
                .map_err(|e| Error::Usage(format!("--filter is not a filter: {e}")))?,
        ),
        None => None,
    };
    let message = ix::SearchRequest {
        collection: args.collection,
        query: Some(query),
        top_k: Some(args.top),
        filter,
        score_threshold: args.threshold,
        with_payload: true,
        with_vector: false,
        exact: args.exact,
        ef_search: args.ef,
    };
    let found = index
        .search(request(message, ctx.timeout))
        .await?
        .into_inner();
    if ctx.json {
        writeln!(io.out, "{}", to_line(&found))?;
        return Ok(());
    }
    let id_width = found
        .hits
        .iter()
        .map(|h| h.id.chars().count())
        .max()
        .unwrap_or(2)
        .max(2);
    writeln!(io.out, "{:>7}  {:<id_width$}  text", "score", "id")?;
    for hit in &found.hits {
        let text = if hit.text.is_empty() {
            &hit.payload
        } else {
            &hit.text
        };
        writeln!(io.out, "{:>7.4}  {:<id_width$}  {text}", hit.score, hit.id)?;
    }
    let how = if found.exact { "exact" } else { "hnsw" };
    io.note(&format!(
        "{} hits; {how} search over {} candidates",
        found.hits.len(),
        found.candidates_scanned
    ))
}

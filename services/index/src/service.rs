//! The gRPC service, thin: each call is validated by `convert`, has its texts embedded by the
//! embedder, and is carried out by the backend on the bounded worker threads.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use oneword_proto::index::v1 as pb;
use oneword_runtime::deadline::Deadline;
use oneword_runtime::Turns;
use tonic::{Request, Response, Status};

use crate::backend::Backend;
use crate::convert::{self, Content, Limits};
use crate::embedder::Embedder;
use crate::types::{Query, Search, Spec};
use crate::Error;

/// The service.
pub struct IndexService {
    pub backend: Arc<dyn Backend>,
    pub embedder: Embedder,
    /// Every backend call runs here, bounded, off the async workers.
    pub turns: Turns,
    pub limits: Limits,
}

impl IndexService {
    /// Runs `work` against the backend on a worker thread.
    async fn backend<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Backend) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let backend = self.backend.clone();
        self.turns
            .run(move || work(backend.as_ref()))
            .await
            .map_err(Error::from)?
    }

    /// The spec of the collection `name` (named by the request field `field`).
    async fn spec(&self, field: &str, name: String) -> Result<Spec, Error> {
        convert::name(field, &name)?;
        self.backend(move |b| b.spec(&name)).await
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[tonic::async_trait]
impl pb::collections_server::Collections for IndexService {
    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        let deadline = Deadline::of(&request);
        let create = convert::create(request.into_inner(), now_us())?;
        let spec = if create.spec.model.is_empty() {
            create.spec
        } else {
            let served = self.embedder.text_model(&deadline).await?;
            convert::with_model(create, &served)?
        };
        let info = self.backend(move |b| b.create(spec)).await?;
        Ok(Response::new(convert::info(info)))
    }

    async fn get(
        &self,
        request: Request<pb::CollectionRef>,
    ) -> Result<Response<pb::CollectionInfo>, Status> {
        let name = request.into_inner().name;
        convert::name("name", &name)?;
        let info = self.backend(move |b| b.get(&name)).await?;
        Ok(Response::new(convert::info(info)))
    }

    async fn list(
        &self,
        _: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let infos = self.backend(|b| b.list()).await?;
        Ok(Response::new(pb::ListResponse {
            collections: infos.into_iter().map(convert::info).collect(),
        }))
    }

    async fn drop(
        &self,
        request: Request<pb::CollectionRef>,
    ) -> Result<Response<pb::DropResponse>, Status> {
        let name = request.into_inner().name;
        convert::name("name", &name)?;
        let points = self.backend(move |b| b.drop_collection(&name)).await?;
        Ok(Response::new(pb::DropResponse { points }))
    }

    #[tracing::instrument(name = "upsert", skip_all, fields(collection, points))]
    async fn upsert(
        &self,
        request: Request<pb::UpsertRequest>,
    ) -> Result<Response<pb::UpsertResponse>, Status> {
        let deadline = Deadline::of(&request);
        let r = request.into_inner();
        tracing::Span::current()
            .record("collection", r.collection.as_str())
            .record("points", r.points.len());
        let spec = self.spec("collection", r.collection).await?;
        let incoming = convert::points(r.points, &spec, &self.limits)?;
        let texts: Vec<String> = incoming
            .iter()
            .filter_map(|p| match &p.content {
                Content::Text(t) => Some(t.clone()),
                Content::Vector(_) => None,
            })
            .collect();
        let (vectors, embedded_tokens) = if texts.is_empty() {
            (Vec::new(), 0)
        } else {
            let e = self.embedder.embed(texts, &spec.model, &deadline).await?;
            (e.vectors, e.tokens)
        };
        let points = convert::embedded(&spec, incoming, vectors)?;
        let upserted = self.backend(move |b| b.upsert(&spec, points)).await?;
        Ok(Response::new(pb::UpsertResponse {
            upserted,
            embedded_tokens,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = request.into_inner();
        convert::name("collection", &r.collection)?;
        let name = r.collection.clone();
        let selector = convert::delete(r, &self.limits)?;
        let deleted = self.backend(move |b| b.delete(&name, &selector)).await?;
        Ok(Response::new(pb::DeleteResponse { deleted }))
    }

    #[tracing::instrument(name = "search", skip_all, fields(collection))]
    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let deadline = Deadline::of(&request);
        let mut r = request.into_inner();
        tracing::Span::current().record("collection", r.collection.as_str());
        let name = std::mem::take(&mut r.collection);
        let spec = self.spec("collection", name.clone()).await?;
        let mut search = convert::search(r, &spec, &self.limits)?;
        let mut embedded_tokens = 0;
        if let Query::Text(text) = &search.query {
            let e = self
                .embedder
                .embed(vec![text.clone()], &spec.model, &deadline)
                .await?;
            embedded_tokens = e.tokens;
            let vector = e.vectors.into_iter().next().ok_or_else(|| {
                Error::Internal("the embedder returned no vector for the query".into())
            })?;
            search.query = Query::Vector(convert::from_embedder(&spec, vector)?);
        }
        let found = self.backend(move |b| b.search(&name, &search)).await?;
        Ok(Response::new(convert::found(found, embedded_tokens)))
    }

    #[tracing::instrument(name = "search_batch", skip_all, fields(searches))]
    async fn search_batch(
        &self,
        request: Request<pb::SearchBatchRequest>,
    ) -> Result<Response<pb::SearchBatchResponse>, Status> {
        let deadline = Deadline::of(&request);
        let requests = request.into_inner().searches;
        tracing::Span::current().record("searches", requests.len());
        convert::batch(requests.len(), &self.limits)?;
        // The searches of each collection, kept together so that the backend can share work
        // among them, each with its place in the batch; each spec is read once.
        let mut groups: Vec<(Spec, Vec<(usize, Search)>)> = Vec::new();
        for (i, mut r) in requests.into_iter().enumerate() {
            let at = convert::in_batch(i);
            let name = std::mem::take(&mut r.collection);
            let g = match groups.iter().position(|(spec, _)| spec.name == name) {
                Some(g) => g,
                None => {
                    let spec = self.spec("collection", name).await.map_err(&at)?;
                    groups.push((spec, Vec::new()));
                    groups.len() - 1
                }
            };
            let search = convert::search(r, &groups[g].0, &self.limits).map_err(&at)?;
            groups[g].1.push((i, search));
        }
        let mut embedded_tokens = 0;
        for (spec, searches) in &mut groups {
            // The text queries of one collection are embedded together.
            let (places, texts): (Vec<usize>, Vec<String>) = searches
                .iter()
                .enumerate()
                .filter_map(|(k, (_, s))| match &s.query {
                    Query::Text(t) => Some((k, t.clone())),
                    _ => None,
                })
                .unzip();
            if texts.is_empty() {
                continue;
            }
            let e = self.embedder.embed(texts, &spec.model, &deadline).await?;
            embedded_tokens += e.tokens;
            if e.vectors.len() != places.len() {
                let (got, asked) = (e.vectors.len(), places.len());
                let why = format!("the embedder returned {got} vectors for {asked} texts");
                return Err(Error::Internal(why).into());
            }
            for (k, vector) in places.into_iter().zip(e.vectors) {
                let (i, search) = &mut searches[k];
                let vector = convert::from_embedder(spec, vector).map_err(convert::in_batch(*i))?;
                search.query = Query::Vector(vector);
            }
        }
        let mut answers = self
            .backend(move |b| {
                let mut answers = Vec::new();
                for (spec, searches) in groups {
                    let (at, searches): (Vec<usize>, Vec<Search>) = searches.into_iter().unzip();
                    answers.extend(at.into_iter().zip(b.search_batch(&spec.name, &searches)?));
                }
                Ok(answers)
            })
            .await?;
        answers.sort_unstable_by_key(|(i, _)| *i);
        Ok(Response::new(pb::SearchBatchResponse {
            results: answers
                .into_iter()
                .map(|(_, found)| convert::found(found, 0))
                .collect(),
            embedded_tokens,
        }))
    }

    async fn snapshot(
        &self,
        request: Request<pb::CollectionRef>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let name = request.into_inner().name;
        convert::name("name", &name)?;
        let (path, points) = self.backend(move |b| b.snapshot(&name)).await?;
        Ok(Response::new(pb::SnapshotResponse {
            path: path.display().to_string(),
            points,
        }))
    }

    async fn retrieve(
        &self,
        request: Request<pb::RetrieveRequest>,
    ) -> Result<Response<pb::RetrieveResponse>, Status> {
        let r = request.into_inner();
        convert::name("collection", &r.collection)?;
        let with = convert::retrieve(&r, &self.limits)?;
        let (name, ids) = (r.collection, r.ids);
        let records = self.backend(move |b| b.retrieve(&name, &ids, with)).await?;
        Ok(Response::new(pb::RetrieveResponse {
            points: records.into_iter().map(convert::record).collect(),
        }))
    }
}

//! Finding a model: a local directory, or a Hugging Face id fetched into the standard Hugging Face
//! cache (with a progress bar) on first use and read from there, offline, afterwards.

use std::path::{Path, PathBuf};

use crate::CheckpointError;

/// Files a GPT-2 checkpoint directory needs; the tokenizer is `tokenizer.json` or the
/// `vocab.json` + `merges.txt` pair.
const WEIGHT_FILES: [&str; 2] = ["config.json", "model.safetensors"];
const TOKENIZER_FILES: [&str; 3] = ["tokenizer.json", "vocab.json", "merges.txt"];

/// Resolves `model` (a directory, or a Hugging Face id such as `gpt2`) to a local directory that
/// holds the checkpoint, downloading into the Hugging Face cache if needed.
pub fn resolve(model: &str) -> Result<PathBuf, CheckpointError> {
    let as_path = Path::new(model);
    if as_path.is_dir() {
        check_dir(as_path)?;
        return Ok(as_path.to_path_buf());
    }
    check_id(model)?;
    if let Some(dir) = cached(model, &WEIGHT_FILES).filter(|dir| TokenizerFiles::find(dir).is_ok())
    {
        return Ok(dir);
    }
    download(model, |repo, unreachable| {
        let dir = fetch_all(repo, &WEIGHT_FILES, &unreachable)?;
        // Prefer tokenizer.json; older repos only have the vocab.json + merges.txt pair.
        if repo.get(TOKENIZER_FILES[0]).is_err() {
            fetch_all(repo, &TOKENIZER_FILES[1..], &unreachable)?;
        }
        Ok(dir)
    })
}

/// Files a sentence-transformers checkpoint needs: the transformer, its tokenizer, and the
/// pipeline after it (see [`crate::SentenceConfig`]).
const SENTENCE_FILES: [&str; 5] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "modules.json",
    "1_Pooling/config.json",
];
/// Read when present: the token limit.
const SENTENCE_OPTIONAL: &str = "sentence_bert_config.json";

/// Resolves a sentence-embedding model (a directory, or a Hugging Face id such as
/// `sentence-transformers/all-MiniLM-L6-v2`) as [`resolve`] does a GPT-2.
pub fn resolve_sentence(model: &str) -> Result<PathBuf, CheckpointError> {
    let as_path = Path::new(model);
    if as_path.is_dir() {
        check_files(as_path, &SENTENCE_FILES)?;
        return Ok(as_path.to_path_buf());
    }
    check_id(model)?;
    if let Some(dir) = cached(model, &SENTENCE_FILES) {
        return Ok(dir);
    }
    download(model, |repo, unreachable| {
        let dir = fetch_all(repo, &SENTENCE_FILES, &unreachable)?;
        // Older checkpoints have no settings file; the model's own limit applies then.
        let _ = repo.get(SENTENCE_OPTIONAL);
        Ok(dir)
    })
}

/// Resolves `model` for a service that reads only the tokenizer files (the tokenizer, the n-gram
/// baseline): a directory is taken as it is, without asking for weights; a Hugging Face id goes
/// through [`resolve`].
pub fn resolve_tokenizer(model: &str) -> Result<PathBuf, CheckpointError> {
    if Path::new(model).is_dir() {
        return Ok(PathBuf::from(model));
    }
    resolve(model)
}

/// Refuses what is meant as a path but is not a directory, rather than asking the hub for it.
fn check_id(model: &str) -> Result<(), CheckpointError> {
    if model.starts_with('.') || model.starts_with('/') || model.matches('/').count() > 1 {
        return Err(CheckpointError::NotFound(format!(
            "`{model}` is not a directory (give a directory holding the checkpoint's files, or a Hugging Face id such as gpt2)"
        )));
    }
    Ok(())
}

/// The cached snapshot of `id`, if every one of `files` is already in the Hugging Face cache.
fn cached(id: &str, files: &[&str]) -> Option<PathBuf> {
    let repo = hf_hub::Cache::from_env().model(id.to_string());
    let first = repo.get(files[0])?;
    for file in &files[1..] {
        repo.get(file)?;
    }
    // Files of one snapshot share its folder; a nested one (1_Pooling/…) is not first.
    Some(
        first
            .parent()
            .expect("a cached file has a folder, this is a bug")
            .to_path_buf(),
    )
}

type Unreachable<'a> = dyn Fn(hf_hub::api::sync::ApiError) -> CheckpointError + 'a;

fn download(
    id: &str,
    fetch: impl FnOnce(
        &hf_hub::api::sync::ApiRepo,
        &Unreachable<'_>,
    ) -> Result<PathBuf, CheckpointError>,
) -> Result<PathBuf, CheckpointError> {
    let unreachable = |e: hf_hub::api::sync::ApiError| {
        CheckpointError::NotFound(format!(
            "could not download `{id}` from the Hugging Face hub ({e}), and it is not in the local Hugging Face cache; without network, give a directory holding the checkpoint's files instead"
        ))
    };
    tracing::info!(model = id, "downloading from the Hugging Face hub");
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(unreachable)?;
    fetch(&api.model(id.to_string()), &unreachable)
}

/// Downloads `files` (the first one at the top of the repository) and returns their folder.
fn fetch_all(
    repo: &hf_hub::api::sync::ApiRepo,
    files: &[&str],
    unreachable: &Unreachable<'_>,
) -> Result<PathBuf, CheckpointError> {
    let mut dir = None;
    for file in files {
        let path = repo.get(file).map_err(unreachable)?;
        dir = dir.or_else(|| path.parent().map(Path::to_path_buf));
    }
    dir.ok_or_else(|| CheckpointError::NotFound("the download landed in no folder".into()))
}

/// Checks that a directory holds a checkpoint, naming what is missing.
pub fn check_dir(dir: &Path) -> Result<(), CheckpointError> {
    check_files(dir, &WEIGHT_FILES)
}

fn check_files(dir: &Path, files: &[&str]) -> Result<(), CheckpointError> {
    let missing: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(CheckpointError::NotFound(format!(
            "{} has no {}",
            dir.display(),
            missing.join(" or ")
        )));
    }
    Ok(())
}

/// The tokenizer files of a checkpoint directory: `tokenizer.json`, else `vocab.json` + `merges.txt`.
pub enum TokenizerFiles {
    Json(PathBuf),
    VocabMerges { vocab: PathBuf, merges: PathBuf },
}

impl TokenizerFiles {
    /// Finds the tokenizer files in `dir`.
    pub fn find(dir: &Path) -> Result<Self, CheckpointError> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Ok(TokenizerFiles::Json(json));
        }
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if vocab.is_file() && merges.is_file() {
            return Ok(TokenizerFiles::VocabMerges { vocab, merges });
        }
        Err(CheckpointError::NotFound(format!(
            "{} has neither tokenizer.json nor vocab.json + merges.txt",
            dir.display()
        )))
    }
}

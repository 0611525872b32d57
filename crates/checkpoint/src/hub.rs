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
    if model.starts_with('.') || model.starts_with('/') || model.matches('/').count() > 1 {
        return Err(CheckpointError::NotFound(format!(
            "`{model}` is not a directory (set MODEL to a directory holding config.json and model.safetensors, or to a Hugging Face id such as gpt2)"
        )));
    }
    if let Some(dir) = cached(model) {
        return Ok(dir);
    }
    download(model)
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

/// The cached snapshot of `id`, if every needed file is already in the Hugging Face cache.
fn cached(id: &str) -> Option<PathBuf> {
    let repo = hf_hub::Cache::from_env().model(id.to_string());
    let config = repo.get("config.json")?;
    repo.get("model.safetensors")?;
    let has_tokenizer = repo.get("tokenizer.json").is_some()
        || (repo.get("vocab.json").is_some() && repo.get("merges.txt").is_some());
    has_tokenizer.then(|| {
        config
            .parent()
            .expect("a cached file has a folder, this is a bug")
            .to_path_buf()
    })
}

fn download(id: &str) -> Result<PathBuf, CheckpointError> {
    let unreachable = |e: hf_hub::api::sync::ApiError| {
        CheckpointError::NotFound(format!(
            "could not download `{id}` from the Hugging Face hub ({e}), and it is not in the local Hugging Face cache; without network, set MODEL to a directory holding config.json, model.safetensors and the tokenizer files (`make demo-model` writes a small one)"
        ))
    };
    tracing::info!(model = id, "downloading from the Hugging Face hub");
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(unreachable)?;
    let repo = api.model(id.to_string());
    let mut dir = None;
    for file in WEIGHT_FILES {
        let path = repo.get(file).map_err(unreachable)?;
        dir = path.parent().map(Path::to_path_buf);
    }
    // Prefer tokenizer.json; older repos only have the vocab.json + merges.txt pair.
    if repo.get(TOKENIZER_FILES[0]).is_err() {
        for file in &TOKENIZER_FILES[1..] {
            repo.get(file).map_err(unreachable)?;
        }
    }
    dir.ok_or_else(|| CheckpointError::NotFound(format!("`{id}` downloaded to no folder")))
}

/// Checks that a directory holds a checkpoint, naming what is missing.
pub fn check_dir(dir: &Path) -> Result<(), CheckpointError> {
    let missing: Vec<&str> = WEIGHT_FILES
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

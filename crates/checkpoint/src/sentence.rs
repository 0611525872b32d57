//! A sentence-transformers checkpoint's recipe for turning token states into one vector per
//! text, read from its own files rather than assumed, so that any sentence-transformers BERT
//! (all-MiniLM-L6-v2, bge, e5, gte …) loads: `modules.json` lists the stages (Transformer →
//! Pooling → optional Normalize), `1_Pooling/config.json` (or wherever `modules.json` points)
//! says which pooling, and `sentence_bert_config.json` gives the token limit.

use std::path::Path;

use serde::Deserialize;

use crate::CheckpointError;

/// How the token states of one text become its vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the real (unpadded) tokens.
    Mean,
    /// The first token's state ([CLS]).
    Cls,
    /// The element-wise maximum over the real tokens.
    Max,
    /// The sum over the real tokens divided by the square root of their number.
    MeanSqrtLen,
    /// The mean weighted by position (1, 2, …, n), as SGPT.
    WeightedMean,
    /// The last real token's state.
    LastToken,
}

impl Pooling {
    /// The name the API reports.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::MeanSqrtLen => "mean_sqrt_len",
            Pooling::WeightedMean => "weighted_mean",
            Pooling::LastToken => "last",
        }
    }
}

/// What a sentence-transformers checkpoint says about its pipeline after the transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct SentenceConfig {
    pub pooling: Pooling,
    /// Whether a Normalize stage follows the pooling (vectors of length 1).
    pub normalize: bool,
    /// The most tokens of one text, special tokens included, if the checkpoint says.
    pub max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct Module {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `1_Pooling/config.json`: one flag per mode, as sentence-transformers' `Pooling` writes it.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PoolingFlags {
    pooling_mode_cls_token: bool,
    pooling_mode_mean_tokens: bool,
    pooling_mode_max_tokens: bool,
    pooling_mode_mean_sqrt_len_tokens: bool,
    pooling_mode_weightedmean_tokens: bool,
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct BertSettings {
    max_seq_length: Option<usize>,
}

impl SentenceConfig {
    /// Reads the pipeline of the checkpoint in `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self, CheckpointError> {
        let modules: Vec<Module> = read_json(&dir.join("modules.json"))?;
        let mut pooling = None;
        let mut normalize = false;
        for (i, module) in modules.iter().enumerate() {
            let kind = module.kind.rsplit('.').next().unwrap_or_default();
            match kind {
                "Transformer" if i == 0 => {}
                "Pooling" => pooling = Some(read_pooling(&dir.join(&module.path))?),
                "Normalize" => normalize = true,
                _ => {
                    return Err(CheckpointError::Config(format!(
                        "{}: module {i} is `{}`; only a Transformer first, then Pooling and Normalize, are supported",
                        dir.join("modules.json").display(),
                        module.kind
                    )))
                }
            }
        }
        let pooling = pooling.ok_or_else(|| {
            CheckpointError::Config(format!(
                "{} lists no Pooling module",
                dir.join("modules.json").display()
            ))
        })?;
        let settings = dir.join("sentence_bert_config.json");
        let max_seq_length = if settings.is_file() {
            read_json::<BertSettings>(&settings)?.max_seq_length
        } else {
            None
        };
        Ok(SentenceConfig {
            pooling,
            normalize,
            max_seq_length,
        })
    }
}

fn read_pooling(dir: &Path) -> Result<Pooling, CheckpointError> {
    let path = dir.join("config.json");
    let flags: PoolingFlags = read_json(&path)?;
    let modes = [
        (flags.pooling_mode_mean_tokens, Pooling::Mean),
        (flags.pooling_mode_cls_token, Pooling::Cls),
        (flags.pooling_mode_max_tokens, Pooling::Max),
        (
            flags.pooling_mode_mean_sqrt_len_tokens,
            Pooling::MeanSqrtLen,
        ),
        (
            flags.pooling_mode_weightedmean_tokens,
            Pooling::WeightedMean,
        ),
        (flags.pooling_mode_lasttoken, Pooling::LastToken),
    ];
    let mut on = modes.iter().filter(|(set, _)| *set).map(|&(_, mode)| mode);
    match (on.next(), on.next()) {
        (Some(mode), None) => Ok(mode),
        (None, _) => Err(CheckpointError::Config(format!(
            "{} turns on no pooling mode",
            path.display()
        ))),
        (Some(_), Some(_)) => Err(CheckpointError::Config(format!(
            "{} turns on several pooling modes (concatenated vectors), which is not supported",
            path.display()
        ))),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(|e| CheckpointError::Io(path.into(), e))?;
    serde_json::from_str(&text)
        .map_err(|e| CheckpointError::Config(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const MODULES: &str = r#"[
      {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
      {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
      {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
    ]"#;

    #[test]
    fn reads_minilms_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "modules.json", MODULES);
        write(
            dir.path(),
            "1_Pooling/config.json",
            r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true}"#,
        );
        write(
            dir.path(),
            "sentence_bert_config.json",
            r#"{"max_seq_length": 256, "do_lower_case": false}"#,
        );
        let config = SentenceConfig::from_dir(dir.path()).unwrap();
        assert_eq!(
            config,
            SentenceConfig {
                pooling: Pooling::Mean,
                normalize: true,
                max_seq_length: Some(256)
            }
        );
    }

    #[test]
    fn the_pooling_comes_from_the_file_and_normalize_from_the_modules() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "modules.json", &MODULES.replace(",\n      {\"idx\": 2, \"name\": \"2\", \"path\": \"2_Normalize\", \"type\": \"sentence_transformers.models.Normalize\"}", ""));
        write(
            dir.path(),
            "1_Pooling/config.json",
            r#"{"pooling_mode_cls_token": true}"#,
        );
        let config = SentenceConfig::from_dir(dir.path()).unwrap();
        assert_eq!(config.pooling, Pooling::Cls);
        assert!(!config.normalize);
        assert_eq!(config.max_seq_length, None);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "modules.json", MODULES);
        write(
            dir.path(),
            "1_Pooling/config.json",
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#,
        );
        let e = SentenceConfig::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("several pooling modes"), "{e}");

        write(
            dir.path(),
            "1_Pooling/config.json",
            r#"{"pooling_mode_cls_token": true}"#,
        );

        write(
            dir.path(),
            "modules.json",
            &MODULES.replace("models.Normalize", "models.Dense"),
        );
        let e = SentenceConfig::from_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sentence_transformers.models.Dense"), "{e}");

        let empty = tempfile::tempdir().unwrap();
        let e = SentenceConfig::from_dir(empty.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("modules.json"), "{e}");
    }
}

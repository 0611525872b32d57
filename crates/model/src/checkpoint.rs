//! Finding a checkpoint's tensors on the device that will run them.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::{Gpt2Config, ModelError};

type Result<T> = std::result::Result<T, ModelError>;

/// An opened checkpoint: its config and a reader over its tensors, with the `transformer.`
/// prefix (written by `GPT2LMHeadModel.save_pretrained`) already stepped into when present.
pub struct Checkpoint {
    pub config: Gpt2Config,
    /// Where it was found.
    pub dir: std::path::PathBuf,
    pub device: Device,
    pub dtype: DType,
    /// How the CPU path stores the transformer's linear layers (`--dtype` q8_0, bf16 or f16 on
    /// the CPU); everything else is read in `dtype`.
    pub weights: WeightFormat,
    /// What the CPU path's KV caches hold (`--kv-cache-dtype`).
    pub kv_cache: crate::KvFormat,
    pub(crate) vb: VarBuilder<'static>,
}

/// How the transformer keeps its linear layers' weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightFormat {
    /// As read, in the checkpoint's `dtype` (f32 packed on the CPU, tensors elsewhere).
    #[default]
    F32,
    /// GGUF's q8_0 on the CPU (see [`crate::narrow`]); read in f32 first.
    Q8_0,
    /// bf16 on the CPU, widened to f32 in registers; read in f32 first.
    Bf16,
    /// f16 on the CPU, likewise.
    F16,
}

impl WeightFormat {
    /// The `--dtype` that asks for it.
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Bf16 => "bf16",
            WeightFormat::F16 => "f16",
        }
    }
}

impl Checkpoint {
    /// What the services do at start-up: resolves `model` (a Hugging Face id or a directory, see
    /// [`oneword_checkpoint::hub::resolve`]), picks the device named by `device` ([`load_device`]) and the
    /// dtype named by `dtype` (`auto` = f32 on CPU, f16 on CUDA; or f32, f16, bf16), and opens
    /// it with every tensor read in that dtype.
    pub fn load(model: &str, device: &str, dtype: &str) -> Result<Self> {
        let dir = oneword_checkpoint::hub::resolve(model)?;
        let device = load_device(device)?;
        let dtype = pick_dtype(dtype, &device)?;
        Self::open(&dir, dtype, &device)
    }

    /// [`Checkpoint::load`] for the transformer's decoder, where `dtype` may also be q8_0 (8-bit
    /// linear layers on the CPU). On the CPU, f16, bf16 and q8_0 name how the linear layers'
    /// weights are stored ([`WeightFormat`]); the rest of the model, the activations and the KV
    /// cache stay f32, which the CPU computes fastest. On a GPU the whole model is read in
    /// `dtype`.
    pub fn load_transformer(model: &str, device: &str, dtype: &str) -> Result<Self> {
        let dir = oneword_checkpoint::hub::resolve(model)?;
        let device = load_device(device)?;
        let weights = match dtype {
            "q8_0" if !device.is_cpu() => {
                return Err(ModelError::Input(
                    "`dtype` q8_0 runs on the CPU only; use f16 or bf16 on a GPU".into(),
                ))
            }
            "q8_0" => WeightFormat::Q8_0,
            "bf16" if device.is_cpu() => WeightFormat::Bf16,
            "f16" if device.is_cpu() => WeightFormat::F16,
            "auto" | "f32" | "f16" | "bf16" => WeightFormat::F32,
            other => {
                return Err(ModelError::Input(format!(
                    "`dtype` must be auto, f32, f16, bf16 or q8_0, got {other:?}"
                )))
            }
        };
        if weights != WeightFormat::F32 {
            let mut checkpoint = Self::open(&dir, DType::F32, &device)?;
            checkpoint.weights = weights;
            return Ok(checkpoint);
        }
        let dtype = pick_dtype(dtype, &device)?;
        Self::open(&dir, dtype, &device)
    }

    /// Opens `dir/config.json` and memory-maps `dir/model.safetensors`, converting tensors to
    /// `dtype` on `device` as they are read.
    pub fn open(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let config = Gpt2Config::from_dir(dir)?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(ModelError::NotFound(format!(
                "{} has no model.safetensors",
                dir.display()
            )));
        }
        // SAFETY: the file is mapped read-only and the mapping lives as long as the VarBuilder;
        // like every mmap it assumes nobody truncates the checkpoint while the service runs.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, device)? };
        let vb = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else if vb.contains_tensor("wte.weight") {
            vb
        } else {
            return Err(ModelError::Checkpoint(
                "model.safetensors has neither `wte.weight` nor `transformer.wte.weight`; is it a GPT-2 checkpoint?".into(),
            ));
        };
        Ok(Checkpoint {
            config,
            dir: dir.to_path_buf(),
            device: device.clone(),
            dtype,
            weights: WeightFormat::F32,
            kv_cache: crate::KvFormat::F32,
            vb,
        })
    }
}

/// The dtype named by `spec` for weights on `device`: `auto` is f32 on the CPU and f16 on CUDA.
pub fn pick_dtype(spec: &str, device: &Device) -> Result<DType> {
    Ok(match (spec, device.is_cuda()) {
        ("auto", false) | ("f32", _) => DType::F32,
        ("auto", true) | ("f16", _) => DType::F16,
        ("bf16", _) => DType::BF16,
        (other, _) => {
            return Err(ModelError::Input(format!(
                "`dtype` must be auto, f32, f16 or bf16, got {other:?}"
            )))
        }
    })
}

/// The device named by `spec`: `cpu`, `cuda` / `cuda:N`, or `auto` (the first GPU if this build
/// has CUDA and one is present, else the CPU).
pub fn load_device(spec: &str) -> Result<Device> {
    let cuda = |ordinal: usize| {
        Device::new_cuda(ordinal).map_err(|e| {
            ModelError::Input(format!(
                "`device` {spec:?} is not usable ({e}); builds without the `cuda` feature only run on `cpu`"
            ))
        })
    };
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(if candle_core::utils::cuda_is_available() {
            cuda(0)?
        } else {
            Device::Cpu
        }),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => cuda(n),
            None => Err(ModelError::Input(format!(
                "`device` must be cpu, auto, cuda or cuda:N, got {other:?}"
            ))),
        },
    }
}

/// Bytes this process's cgroup (v2) may still allocate: `memory.max - memory.current`, or `None`
/// without a limit.
fn cgroup_room() -> Option<u64> {
    let read = |file: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{file}")).ok();
    let max: u64 = read("memory.max")?.trim().parse().ok()?; // "max" = no limit
    let current: u64 = read("memory.current")?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// Memory free for new allocations on `device`, in bytes, when it can be told: on the CPU the
/// kernel's `MemAvailable`, or less when a cgroup (a container's memory limit) allows less; the
/// driver's free memory on a GPU.
pub fn free_memory(device: &Device) -> Option<u64> {
    match device {
        Device::Cpu => {
            let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
            let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            let available = kib * 1024;
            // /proc/meminfo describes the whole node; a container is killed at its own limit.
            Some(cgroup_room().map_or(available, |room| room.min(available)))
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(cuda) => cuda
            .cuda_stream()
            .context()
            .mem_get_info()
            .ok()
            .map(|(free, _total)| free as u64),
        #[allow(unreachable_patterns)] // Metal, or CUDA in a build without it
        _ => None,
    }
}

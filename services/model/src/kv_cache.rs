//! Each sequence's keys and values, kept outside the immutable model so that one model serves
//! many sessions.
//!
//! On the CPU the cache is plain memory that grows in place: a decode step appends one row per
//! layer instead of copying the whole past, and attention reads it directly
//! ([`attend_host`]). On other devices it is candle tensors `[n_head, len, head_dim]` that each
//! step replaces, so it works wherever candle does.

use candle_core::Tensor;

use crate::kernels::{axpy, dot};

/// Host caches grow by this many positions at a time, so that appending a token rarely
/// reallocates and the memory held is at most this much over what is used.
pub(crate) const HOST_BLOCK: usize = 16;

/// One sequence's keys and values for every layer. `Clone` copies them (a fork then diverges
/// from its source without either seeing the other's new positions).
#[derive(Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
    pub(crate) len: usize,
    /// Floats per position and layer for keys (and as many for values): `n_embd`.
    pub(crate) width: usize,
}

#[derive(Clone)]
pub(crate) enum LayerCache {
    /// Rows `[len, n_embd]`: each position's keys for all heads side by side, as `c_attn`
    /// writes them (values alike).
    Host { keys: Vec<f32>, values: Vec<f32> },
    /// `(keys, values)`, each `[n_head, len, head_dim]`; `None` before the first step.
    Device(Option<(Tensor, Tensor)>),
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been run through this cache yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the keys and values occupy, counting memory reserved for growth.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|layer| match layer {
                LayerCache::Host { keys, values } => (keys.capacity() + values.capacity()) * 4,
                LayerCache::Device(None) => 0,
                LayerCache::Device(Some((k, v))) => {
                    (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes()
                }
            })
            .sum()
    }

    /// Positions this cache will have room for after `new` more are appended: what admission
    /// control has to reserve.
    pub fn capacity_after(&self, new: usize) -> usize {
        let needed = self.len + new;
        match self.layers.first() {
            Some(LayerCache::Host { keys, .. }) => {
                let held = keys.capacity() / self.width.max(1);
                held.max(needed.next_multiple_of(HOST_BLOCK))
            }
            _ => needed,
        }
    }

    /// Forgets every position from `len` on: how a step that failed half-way is undone.
    pub fn truncate(&mut self, len: usize) -> candle_core::Result<()> {
        if len >= self.len {
            return Ok(());
        }
        for layer in &mut self.layers {
            match layer {
                LayerCache::Host { keys, values } => {
                    keys.truncate(len * self.width);
                    values.truncate(len * self.width);
                }
                LayerCache::Device(kv) => {
                    *kv = match kv.take() {
                        Some((k, v)) if len > 0 && k.dim(1)? > len => {
                            Some((k.narrow(1, 0, len)?, v.narrow(1, 0, len)?))
                        }
                        Some(kv) if len > 0 => Some(kv),
                        _ => None,
                    }
                }
            }
        }
        self.len = len;
        Ok(())
    }
}

/// Appends `n` positions' keys and values, taken from rows of `c_attn`'s output `qkv`
/// `[n, 3 · width]` (queries, then keys, then values).
pub(crate) fn append_host(keys: &mut Vec<f32>, values: &mut Vec<f32>, qkv: &[f32], width: usize) {
    let n = qkv.len() / (3 * width);
    let needed = (keys.len() / width + n).next_multiple_of(HOST_BLOCK) * width;
    if keys.capacity() < needed {
        keys.reserve_exact(needed - keys.len());
        values.reserve_exact(needed - values.len());
    }
    for row in qkv.chunks_exact(3 * width) {
        keys.extend_from_slice(&row[width..2 * width]);
        values.extend_from_slice(&row[2 * width..]);
    }
}

/// Causal attention of one head for `n` new queries (the last `n` positions of the cache), on
/// the CPU: for each query, scores against every key up to its own position, a softmax, and the
/// weighted sum of values. Returns `[n, head_dim]`.
/// Inlined into the caller so that it compiles for the instruction set `pulp` dispatched to.
#[allow(clippy::too_many_arguments)] // one head's slice of the shapes; a struct would only rename them
#[inline(always)]
pub(crate) fn attend_host(
    qkv: &[f32],
    keys: &[f32],
    values: &[f32],
    width: usize,
    head: usize,
    head_dim: usize,
    scale: f32,
) -> Vec<f32> {
    let n = qkv.len() / (3 * width);
    let len = keys.len() / width;
    let past = len - n;
    let columns = head * head_dim..(head + 1) * head_dim;
    let mut out = vec![0f32; n * head_dim];
    let mut scores = Vec::with_capacity(len);
    for (t, out) in out.chunks_exact_mut(head_dim).enumerate() {
        let query = &qkv[t * 3 * width..][columns.clone()];
        let visible = past + t + 1;
        scores.clear();
        scores
            .extend((0..visible).map(|j| dot(query, &keys[j * width..][columns.clone()]) * scale));
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            total += *s;
        }
        for (j, s) in scores.iter().enumerate() {
            axpy(s / total, &values[j * width..][columns.clone()], out);
        }
    }
    out
}

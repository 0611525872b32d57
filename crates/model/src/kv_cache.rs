//! Each sequence's keys and values, kept outside the immutable model so that one model serves
//! many sessions.
//!
//! On the CPU the cache is plain memory that grows in place, laid out head by head, so that a
//! head's attention reads its keys and values as contiguous runs: a decode step appends one row
//! per layer instead of copying the whole past ([`HostLayer`]). Keys are stored transposed in
//! blocks of [`KEY_BLOCK`] positions, the layout [`crate::flash`] multiplies by. Its elements are
//! f32, or f16 ([`KvFormat`]) to hold twice the positions in the same memory (and read half the
//! bytes per decode step), widened block by block as attention reads them. On other devices
//! it is candle tensors `[n_head, len, head_dim]` that each step replaces, so it works wherever
//! candle does.

use candle_core::Tensor;

use crate::flash::{self, KEY_BLOCK};
use crate::narrow::{Format, F16};

/// What a host cache stores its keys and values in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvFormat {
    #[default]
    F32,
    /// Half the bytes per position; each key and value rounded to the nearest f16.
    F16,
}

impl KvFormat {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            KvFormat::F32 => 4,
            KvFormat::F16 => 2,
        }
    }
}

/// A host cache's keys or values.
#[derive(Clone)]
enum Elements {
    F32(Vec<f32>),
    /// f16 bits ([`F16`]).
    F16(Vec<u16>),
}

impl Elements {
    fn new(format: KvFormat) -> Self {
        match format {
            KvFormat::F32 => Elements::F32(Vec::new()),
            KvFormat::F16 => Elements::F16(Vec::new()),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Elements::F32(v) => v.len() * 4,
            Elements::F16(v) => v.len() * 2,
        }
    }

    fn set(&mut self, at: usize, value: f32) {
        match self {
            Elements::F32(v) => v[at] = value,
            Elements::F16(v) => v[at] = F16::store(value, 1.0),
        }
    }

    fn copy_from(&mut self, at: usize, values: &[f32]) {
        match self {
            Elements::F32(v) => v[at..at + values.len()].copy_from_slice(values),
            Elements::F16(v) => v[at..at + values.len()]
                .iter_mut()
                .zip(values)
                .for_each(|(e, &x)| *e = F16::store(x, 1.0)),
        }
    }

    /// `heads` runs of `old_run` elements moved into runs of `new_run`, the first `used` of each
    /// kept.
    fn relayout(&mut self, heads: usize, old_run: usize, new_run: usize, used: usize) {
        fn moved<T: Copy + Default>(
            old: &[T],
            heads: usize,
            from: usize,
            to: usize,
            used: usize,
        ) -> Vec<T> {
            let mut new = vec![T::default(); heads * to];
            for h in 0..heads {
                new[h * to..][..used].copy_from_slice(&old[h * from..][..used]);
            }
            new
        }
        match self {
            Elements::F32(v) => *v = moved(v, heads, old_run, new_run, used),
            Elements::F16(v) => *v = moved(v, heads, old_run, new_run, used),
        }
    }
}

/// Host caches grow by this many positions at a time, so that appending a token rarely
/// reallocates and the memory held is at most this much over what is used. Whole key blocks.
pub(crate) const HOST_BLOCK: usize = KEY_BLOCK;

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
    Host(HostLayer),
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
                LayerCache::Host(host) => host.keys.bytes() + host.values.bytes(),
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
            Some(LayerCache::Host(host)) => host.capacity.max(needed.next_multiple_of(HOST_BLOCK)),
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
                LayerCache::Host(host) => host.len = host.len.min(len),
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

/// One layer's keys and values on the CPU for `capacity` positions, of which the first `len` are
/// in use: keys `[head][position / KEY_BLOCK][head_dim][KEY_BLOCK]`, values
/// `[head][position][head_dim]`.
#[derive(Clone)]
pub(crate) struct HostLayer {
    keys: Elements,
    values: Elements,
    len: usize,
    capacity: usize,
    heads: usize,
    head_dim: usize,
}

impl HostLayer {
    pub(crate) fn new(heads: usize, head_dim: usize, format: KvFormat) -> Self {
        HostLayer {
            keys: Elements::new(format),
            values: Elements::new(format),
            len: 0,
            capacity: 0,
            heads,
            head_dim,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends the keys and values in rows of `c_attn`'s output `qkv` `[n, 3 · width]`
    /// (queries, then keys, then values; heads side by side in each).
    pub(crate) fn append(&mut self, qkv: &[f32]) {
        let (heads, head_dim) = (self.heads, self.head_dim);
        let width = heads * head_dim;
        let n = qkv.len() / (3 * width);
        if self.len + n > self.capacity {
            self.grow((self.len + n).next_multiple_of(HOST_BLOCK));
        }
        let capacity = self.capacity;
        for (t, row) in qkv.chunks_exact(3 * width).enumerate() {
            let position = self.len + t;
            let (block, slot) = (position / KEY_BLOCK, position % KEY_BLOCK);
            for h in 0..heads {
                let at = (h * capacity + position) * head_dim;
                let from = h * head_dim;
                let keys = (h * capacity + block * KEY_BLOCK) * head_dim;
                for (d, &k) in row[width + from..][..head_dim].iter().enumerate() {
                    self.keys.set(keys + d * KEY_BLOCK + slot, k);
                }
                self.values
                    .copy_from(at, &row[2 * width + from..][..head_dim]);
            }
        }
        self.len += n;
    }

    /// Moves to room for `capacity` positions, keeping each head's run contiguous.
    fn grow(&mut self, capacity: usize) {
        let hd = self.head_dim;
        // Whole key blocks (their layout interleaves positions).
        let used = self.len.next_multiple_of(KEY_BLOCK) * hd;
        for elements in [&mut self.keys, &mut self.values] {
            elements.relayout(self.heads, self.capacity * hd, capacity * hd, used);
        }
        self.capacity = capacity;
    }

    /// Causal attention of `head` for the last `n` positions, whose queries are in `qkv`
    /// `[n, 3 · width]`: for each, softmax-weighted values over every key up to its own
    /// position ([`flash::attend`]). Returns `[n, head_dim]`.
    pub(crate) fn attend(&self, qkv: &[f32], head: usize, scale: f32) -> Vec<f32> {
        let head_dim = self.head_dim;
        let width = self.heads * head_dim;
        let n = qkv.len() / (3 * width);
        let queries: Vec<f32> = qkv
            .chunks_exact(3 * width)
            .flat_map(|row| &row[head * head_dim..][..head_dim])
            .copied()
            .collect();
        let run = head * self.capacity * head_dim..(head + 1) * self.capacity * head_dim;
        let past = self.len - n;
        match (&self.keys, &self.values) {
            (Elements::F32(k), Elements::F32(v)) => {
                flash::attend(&queries, &k[run.clone()], &v[run], past, head_dim, scale)
            }
            (Elements::F16(k), Elements::F16(v)) => {
                flash::attend(&queries, &k[run.clone()], &v[run], past, head_dim, scale)
            }
            _ => unreachable!("keys and values of one format, this is a bug"),
        }
    }
}

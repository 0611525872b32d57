//! Each sequence's keys and values, kept outside the immutable model so that one model serves
//! many sessions.
//!
//! On the CPU the cache is plain memory in blocks of [`KEY_BLOCK`] positions ([`HostLayer`]): a
//! decode step writes one row per layer into the last block instead of copying the whole past,
//! and a fork shares every block with its source, each copied only when one side writes into it
//! (in practice the last, partly filled one), so forking a long session costs a block per layer,
//! not the whole cache. Keys are stored transposed in their block, the layout [`crate::flash`]
//! multiplies by. Its elements are
//! f32, or f16 ([`KvFormat`]) to hold twice the positions in the same memory (and read half the
//! bytes per decode step), widened in registers as attention reads them. On other devices it is
//! a table of blocks in a pool of candle tensors ([`crate::paged`]), written in place the same way,
//! so it works wherever candle does.

use std::sync::Arc;

use crate::flash::{self, KEY_BLOCK};
use crate::narrow::{Format, F16};
use crate::paged::{self, PagedCache};

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
    fn zeros(format: KvFormat, len: usize) -> Self {
        match format {
            KvFormat::F32 => Elements::F32(vec![0.0; len]),
            KvFormat::F16 => Elements::F16(vec![0; len]),
        }
    }

    fn f32s(&self) -> Option<&[f32]> {
        match self {
            Elements::F32(v) => Some(v),
            Elements::F16(_) => None,
        }
    }

    fn f16s(&self) -> Option<&[u16]> {
        match self {
            Elements::F16(v) => Some(v),
            Elements::F32(_) => None,
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
}

/// One sequence's keys and values for every layer. `Clone` is a fork: it shares the blocks, and
/// either side copies a shared block before writing into it, so neither sees the other's new
/// positions.
#[derive(Clone)]
pub struct KvCache {
    pub(crate) store: Store,
    pub(crate) len: usize,
    /// Floats per position and layer for keys (and as many for values): `n_embd`.
    pub(crate) width: usize,
}

#[derive(Clone)]
pub(crate) enum Store {
    /// One per layer, for the CPU path.
    Host(Vec<HostLayer>),
    /// A block table into the model's pool, for the tensor path.
    Paged(PagedCache),
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
        match &self.store {
            Store::Host(layers) => layers.iter().map(HostLayer::bytes).sum(),
            Store::Paged(paged) => paged.bytes(),
        }
    }

    /// Positions this cache will have room for after `new` more are appended: what admission
    /// control has to reserve.
    pub fn capacity_after(&self, new: usize) -> usize {
        let (blocks, block) = match &self.store {
            Store::Host(layers) => (layers.first().map_or(0, |l| l.blocks.len()), KEY_BLOCK),
            Store::Paged(paged) => (paged.blocks(), paged::BLOCK),
        };
        (blocks * block).max((self.len + new).next_multiple_of(block))
    }

    /// Forgets every position from `len` on: how a step that failed half-way is undone.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        match &mut self.store {
            Store::Host(layers) => layers.iter_mut().for_each(|l| l.len = l.len.min(len)),
            Store::Paged(paged) => paged.truncate(len),
        }
        self.len = len;
    }
}

/// One block's keys and values in every head: keys `[head][head_dim][KEY_BLOCK]`, values
/// `[head][KEY_BLOCK][head_dim]`.
#[derive(Clone)]
struct Block {
    keys: Elements,
    values: Elements,
}

/// One layer's keys and values on the CPU, in blocks of [`KEY_BLOCK`] positions (shared with
/// forks), of which the first `len` positions are in use.
#[derive(Clone)]
pub(crate) struct HostLayer {
    blocks: Vec<Arc<Block>>,
    len: usize,
    heads: usize,
    head_dim: usize,
    format: KvFormat,
}

impl HostLayer {
    pub(crate) fn new(heads: usize, head_dim: usize, format: KvFormat) -> Self {
        HostLayer {
            blocks: Vec::new(),
            len: 0,
            heads,
            head_dim,
            format,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of the blocks this layer holds, shared ones included.
    fn bytes(&self) -> usize {
        let per_block = 2 * self.heads * self.head_dim * KEY_BLOCK * self.format.size();
        self.blocks.len() * per_block
    }

    /// Appends the keys and values in rows of `c_attn`'s output `qkv` `[n, 3 · width]`
    /// (queries, then keys, then values; heads side by side in each).
    pub(crate) fn append(&mut self, qkv: &[f32]) {
        let (heads, head_dim) = (self.heads, self.head_dim);
        let width = heads * head_dim;
        for (t, row) in qkv.chunks_exact(3 * width).enumerate() {
            let position = self.len + t;
            let (index, slot) = (position / KEY_BLOCK, position % KEY_BLOCK);
            if index == self.blocks.len() {
                let len = width * KEY_BLOCK;
                self.blocks.push(Arc::new(Block {
                    keys: Elements::zeros(self.format, len),
                    values: Elements::zeros(self.format, len),
                }));
            }
            // A block a fork shares is copied here, before the first write into it.
            let block = Arc::make_mut(&mut self.blocks[index]);
            for h in 0..heads {
                let from = h * head_dim;
                let keys = h * head_dim * KEY_BLOCK;
                for (d, &k) in row[width + from..][..head_dim].iter().enumerate() {
                    block.keys.set(keys + d * KEY_BLOCK + slot, k);
                }
                let at = (h * KEY_BLOCK + slot) * head_dim;
                block
                    .values
                    .copy_from(at, &row[2 * width + from..][..head_dim]);
            }
        }
        self.len += qkv.len() / (3 * width);
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
        let past = self.len - n;
        let used = &self.blocks[..self.len.div_ceil(KEY_BLOCK)];
        let run = head * head_dim * KEY_BLOCK..(head + 1) * head_dim * KEY_BLOCK;
        fn head_blocks<'a, T>(
            used: &'a [Arc<Block>],
            run: &std::ops::Range<usize>,
            part: impl Fn(&'a Block) -> Option<&'a [T]>,
        ) -> Vec<&'a [T]> {
            used.iter()
                .map(|b| {
                    &part(b).expect("keys and values of one format, this is a bug")[run.clone()]
                })
                .collect()
        }
        match self.format {
            KvFormat::F32 => {
                let keys = head_blocks(used, &run, |b| b.keys.f32s());
                let values = head_blocks(used, &run, |b| b.values.f32s());
                flash::attend(&queries, &keys, &values, past, head_dim, scale)
            }
            KvFormat::F16 => {
                let keys = head_blocks(used, &run, |b| b.keys.f16s());
                let values = head_blocks(used, &run, |b| b.values.f16s());
                flash::attend(&queries, &keys, &values, past, head_dim, scale)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` rows of `qkv` for 2 heads of 4, every value distinct.
    fn rows(n: usize, from: usize) -> Vec<f32> {
        (0..n * 3 * 8).map(|i| (from * 24 + i) as f32).collect()
    }

    fn shared(a: &HostLayer, b: &HostLayer) -> Vec<bool> {
        a.blocks
            .iter()
            .zip(&b.blocks)
            .map(|(a, b)| Arc::ptr_eq(a, b))
            .collect()
    }

    /// A fork shares every block; writing copies only the block written into, so the source
    /// keeps its positions and the fork gets its own.
    #[test]
    fn a_fork_shares_blocks_until_one_side_writes_into_them() {
        for format in [KvFormat::F32, KvFormat::F16] {
            let mut source = HostLayer::new(2, 4, format);
            source.append(&rows(40, 0));
            let before = source.attend(&rows(1, 39), 1, 0.5);
            let mut fork = source.clone();
            assert_eq!(shared(&source, &fork), [true, true, true]);
            fork.append(&rows(1, 100));
            assert_eq!(
                shared(&source, &fork),
                [true, true, false],
                "the partial block"
            );
            assert_eq!(source.attend(&rows(1, 39), 1, 0.5), before);
            assert_eq!(source.bytes(), fork.bytes());

            // Undoing into a shared full block, then writing: that block is copied too.
            fork.len = 20;
            fork.append(&rows(1, 200));
            assert_eq!(shared(&source, &fork), [true, false, false]);
            assert_eq!(source.attend(&rows(1, 39), 1, 0.5), before);
        }
    }
}

//! The tensor path's keys and values (the path a GPU takes), paged as in vLLM's PagedAttention:
//! per layer one pool `[n_head, slots, head_dim]` in the model's dtype on its device, handed out
//! in blocks of [`BLOCK`] positions. A session holds a table of blocks. A step writes its new
//! rows into their slots in place (one scatter per layer for the whole pass) and copies nothing
//! else; a fork shares every block, and a block both sides hold is copied on the device, once,
//! before either writes into it. A block goes back to the pool when its last holder lets go.
//!
//! [`PassIndex`] turns a pass's block tables into the index tensors every layer's attention
//! shares, uploaded once per pass, so that the number of operations per layer does not depend on
//! how many sequences the pass holds.

use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Tensor};

use crate::ModelError;

type Result<T> = std::result::Result<T, ModelError>;

/// Positions per block.
pub(crate) const BLOCK: usize = 16;

/// Most attention scores one group may hold (heads · sequences · queries · keys, padding
/// included): 1 GiB in f32, and well inside the 32-bit element indices of candle's GPU softmax.
/// Without it a pass of `--max-batch-tokens` rows mixing long and short prompt chunks pads
/// every chunk to the longest: quadratic in that flag, past 2^31 scores at about 1,000 rows.
const MAX_GROUP_SCORES: usize = 1 << 28;

/// Every layer's keys and values for all sessions of one model.
pub(crate) struct Pool {
    state: Mutex<State>,
    layers: usize,
    heads: usize,
    head_dim: usize,
    dtype: DType,
    device: Device,
}

struct State {
    /// Per layer, `[n_head, blocks · BLOCK, head_dim]`.
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    blocks: usize,
    free: Vec<u32>,
}

impl Pool {
    pub(crate) fn new(
        layers: usize,
        heads: usize,
        head_dim: usize,
        dtype: DType,
        device: Device,
    ) -> Self {
        Pool {
            state: Mutex::new(State {
                keys: Vec::new(),
                values: Vec::new(),
                blocks: 0,
                free: Vec::new(),
            }),
            layers,
            heads,
            head_dim,
            dtype,
            device,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent free list (pushes and pops only).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes one block takes in every layer, keys and values.
    pub(crate) fn block_bytes(&self) -> usize {
        2 * self.layers * self.heads * self.head_dim * BLOCK * self.dtype.size_in_bytes()
    }

    /// Grows the pool to hold at least `blocks` blocks: done once at start-up with the KV
    /// budget, so that serving never grows it (growing copies every layer's pool).
    pub(crate) fn reserve(&self, blocks: usize) -> Result<()> {
        let mut state = self.lock();
        self.grow(&mut state, blocks)
    }

    fn grow(&self, state: &mut State, blocks: usize) -> Result<()> {
        if blocks <= state.blocks {
            return Ok(());
        }
        let shape = (self.heads, blocks * BLOCK, self.head_dim);
        let larger = |old: Option<&Tensor>| -> Result<Tensor> {
            let new = Tensor::zeros(shape, self.dtype, &self.device)?;
            if let Some(old) = old {
                new.slice_set(old, 1, 0)?;
            }
            Ok(new)
        };
        let keys = (0..self.layers)
            .map(|l| larger(state.keys.get(l)))
            .collect::<Result<Vec<_>>>()?;
        let values = (0..self.layers)
            .map(|l| larger(state.values.get(l)))
            .collect::<Result<Vec<_>>>()?;
        (state.keys, state.values) = (keys, values);
        state
            .free
            .extend((state.blocks as u32..blocks as u32).rev());
        state.blocks = blocks;
        Ok(())
    }

    /// `n` free blocks, growing the pool (at least doubling it) when there are not enough.
    fn take(self: &Arc<Self>, n: usize) -> Result<Vec<Arc<BlockRef>>> {
        let mut state = self.lock();
        if state.free.len() < n {
            let blocks = (state.blocks + n - state.free.len()).max(2 * state.blocks);
            self.grow(&mut state, blocks)?;
        }
        let at = state.free.len() - n;
        Ok(state
            .free
            .drain(at..)
            .map(|id| {
                Arc::new(BlockRef {
                    id,
                    pool: Arc::clone(self),
                })
            })
            .collect())
    }

    /// Blocks that caches hold.
    pub(crate) fn in_use(&self) -> usize {
        let state = self.lock();
        state.blocks - state.free.len()
    }

    /// Layer `l`'s keys and values.
    pub(crate) fn layer(&self, l: usize) -> (Tensor, Tensor) {
        let state = self.lock();
        (state.keys[l].clone(), state.values[l].clone())
    }

    /// Copies block `from` into block `to` in every layer, for each pair.
    fn copy_blocks(&self, pairs: &[(u32, u32)]) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let slots = |pick: fn(&(u32, u32)) -> u32| -> Vec<u32> {
            pairs
                .iter()
                .flat_map(|p| (0..BLOCK as u32).map(move |s| pick(p) * BLOCK as u32 + s))
                .collect()
        };
        let n = pairs.len() * BLOCK;
        let from = Tensor::from_vec(slots(|p| p.0), n, &self.device)?;
        let to = Tensor::from_vec(slots(|p| p.1), (1, n, 1), &self.device)?
            .broadcast_as((self.heads, n, self.head_dim))?
            .contiguous()?;
        let state = self.lock();
        for pool in state.keys.iter().chain(&state.values) {
            pool.scatter_set(&to, &pool.index_select(&from, 1)?, 1)?;
        }
        Ok(())
    }
}

/// One block of the pool, given back when the last cache holding it drops it.
pub(crate) struct BlockRef {
    id: u32,
    pool: Arc<Pool>,
}

impl Drop for BlockRef {
    fn drop(&mut self) {
        self.pool.lock().free.push(self.id);
    }
}

/// One session's block table. `Clone` is a fork: it shares every block.
#[derive(Clone)]
pub(crate) struct PagedCache {
    pub(crate) pool: Arc<Pool>,
    blocks: Vec<Arc<BlockRef>>,
}

impl PagedCache {
    pub(crate) fn new(pool: Arc<Pool>) -> Self {
        PagedCache {
            pool,
            blocks: Vec::new(),
        }
    }

    /// Blocks held (shared ones included).
    pub(crate) fn blocks(&self) -> usize {
        self.blocks.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.blocks.len() * self.pool.block_bytes()
    }

    /// Makes room for positions `len..len + new`: a block shared with a fork that these
    /// positions write into is replaced by a copy of its own, and new blocks are taken from the
    /// pool. After an error the table is as it was.
    pub(crate) fn prepare(&mut self, len: usize, new: usize) -> Result<()> {
        let needed = (len + new).div_ceil(BLOCK);
        let first_written = len / BLOCK;
        let shared: Vec<usize> = (first_written..self.blocks.len().min(needed))
            .filter(|&b| Arc::strong_count(&self.blocks[b]) > 1)
            .collect();
        let missing = needed.saturating_sub(self.blocks.len());
        let mut fresh = self.pool.take(shared.len() + missing)?;
        let copies: Vec<(u32, u32)> = shared
            .iter()
            .zip(&fresh)
            .map(|(&b, to)| (self.blocks[b].id, to.id))
            .collect();
        self.pool.copy_blocks(&copies)?;
        let added = fresh.split_off(shared.len());
        for (&b, copy) in shared.iter().zip(fresh) {
            self.blocks[b] = copy;
        }
        self.blocks.extend(added);
        Ok(())
    }

    /// Forgets the blocks past the first `len` positions.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.blocks.truncate(len.div_ceil(BLOCK));
    }

    /// The pool slot of `position`.
    fn slot(&self, position: usize) -> u32 {
        self.blocks[position / BLOCK].id * BLOCK as u32 + (position % BLOCK) as u32
    }
}

/// One sequence of a pass: its cache, positions already cached, and new rows.
pub(crate) struct PassSequence<'a> {
    pub(crate) cache: &'a PagedCache,
    pub(crate) past: usize,
    pub(crate) rows: usize,
}

/// Sequences of a pass that attend together: padded to `queries` rows and `keys` positions each.
pub(crate) struct Group {
    pub(crate) sequences: usize,
    pub(crate) queries: usize,
    pub(crate) keys: usize,
    /// `[sequences · queries]`: the pass row each query comes from (padding repeats a row).
    pub(crate) query_rows: Tensor,
    /// `[sequences · keys]`: the pool slot of each key position (padding repeats a slot).
    pub(crate) key_slots: Tensor,
    /// `[sequences, queries, keys]` f32, added to the scores: 0 where a query sees a key (up to
    /// its own position), the lowest f32 elsewhere.
    pub(crate) mask: Tensor,
}

/// What every layer's attention in one pass shares.
pub(crate) struct PassIndex {
    /// `[n_head, rows, head_dim]`: the slot each new row's keys and values go to.
    pub(crate) write: Tensor,
    /// Decode steps (one row each), then prompt chunks of like lengths ([`group_members`]);
    /// each group one attention per layer.
    pub(crate) groups: Vec<Group>,
    /// `[rows]`: where each pass row's output is among the groups' padded outputs, one after
    /// the other; `None` when that is every row in order.
    pub(crate) order: Option<Tensor>,
}

impl PassIndex {
    /// Built on the host and uploaded in one transfer; the masks are made on the device.
    pub(crate) fn new(sequences: &[PassSequence<'_>], pool: &Pool) -> Result<Self> {
        let total: usize = sequences.iter().map(|s| s.rows).sum();
        let mut starts = Vec::with_capacity(sequences.len());
        let mut upload: Vec<u32> = Vec::new();
        for s in sequences {
            starts.push(upload.len() as u32);
            upload.extend((s.past..s.past + s.rows).map(|p| s.cache.slot(p)));
        }
        // Per group: where its parts start in `upload`, and its padded sizes.
        let mut layouts = Vec::new();
        let mut order = vec![0u32; total];
        let mut padded_rows = 0;
        for members in group_members(sequences, pool.heads, MAX_GROUP_SCORES) {
            let queries = members
                .iter()
                .map(|&i| sequences[i].rows)
                .max()
                .unwrap_or(1);
            let tables = members
                .iter()
                .map(|&i| sequences[i].cache.blocks.len())
                .max()
                .unwrap_or(1);
            let query_rows = upload.len();
            for &i in &members {
                let first = starts[i];
                upload.extend((0..queries).map(|r| first + r.min(sequences[i].rows - 1) as u32));
            }
            let table = upload.len();
            for &i in &members {
                let blocks = &sequences[i].cache.blocks;
                upload.extend((0..tables).map(|b| blocks[b.min(blocks.len() - 1)].id));
            }
            let positions = upload.len();
            for &i in &members {
                let s = &sequences[i];
                // A padding query sees the first key only, so its softmax stays finite.
                upload
                    .extend((0..queries).map(|r| if r < s.rows { (s.past + r) as u32 } else { 0 }));
            }
            for (m, &i) in members.iter().enumerate() {
                let first = starts[i] as usize;
                for r in 0..sequences[i].rows {
                    order[first + r] = (padded_rows + m * queries + r) as u32;
                }
            }
            padded_rows += members.len() * queries;
            layouts.push((members.len(), queries, tables, query_rows, table, positions));
        }
        let in_order = order.iter().enumerate().all(|(i, &o)| o as usize == i);
        let longest = layouts.iter().map(|l| l.2 * BLOCK).max().unwrap_or(BLOCK);
        let iota_at = upload.len();
        upload.extend(0..longest as u32);
        let order_at = upload.len();
        upload.extend(&order);

        let device = &pool.device;
        let all = Tensor::from_vec(upload, order_at + total, device)?;
        let part = |at: usize, len: usize| all.narrow(0, at, len);
        // 0, 1, 2, …: key positions, and slots within a block.
        let iota = |len: usize| part(iota_at, len);
        let (heads, head_dim) = (pool.heads, pool.head_dim);
        let write = part(0, total)?
            .reshape((1, total, 1))?
            .broadcast_as((heads, total, head_dim))?
            .contiguous()?;
        let groups = layouts
            .into_iter()
            .map(|(n, queries, tables, query_rows, table, positions)| {
                let keys = tables * BLOCK;
                let key_slots = part(table, n * tables)?
                    .reshape((n, tables, 1))?
                    .affine(BLOCK as f64, 0.0)?
                    .broadcast_add(&iota(BLOCK)?.reshape((1, 1, BLOCK))?)?
                    .reshape(n * keys)?;
                let seen = iota(keys)?
                    .reshape((1, 1, keys))?
                    .broadcast_le(&part(positions, n * queries)?.reshape((n, queries, 1))?)?;
                // 1 → 0, 0 → the lowest f32: an additive mask, as transformers' finfo.min.
                let mask = seen
                    .to_dtype(DType::F32)?
                    .affine(f32::MAX as f64, f32::MIN as f64)?;
                Ok(Group {
                    sequences: n,
                    queries,
                    keys,
                    query_rows: part(query_rows, n * queries)?,
                    key_slots,
                    mask,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PassIndex {
            write,
            groups,
            order: (!in_order).then(|| part(order_at, total)).transpose()?,
        })
    }
}

/// Which sequences of a pass attend together: decode steps (one query each) in arrival order,
/// then prompt chunks, most rows first. A group ends where the next chunk has under half the
/// first one's rows (so padding at most doubles a group's queries) or where its scores would
/// pass `max_scores` (a sequence alone may, since it cannot be split).
fn group_members(
    sequences: &[PassSequence<'_>],
    heads: usize,
    max_scores: usize,
) -> Vec<Vec<usize>> {
    let (decode, mut prompt): (Vec<usize>, Vec<usize>) =
        (0..sequences.len()).partition(|&i| sequences[i].rows == 1);
    prompt.sort_by_key(|&i| std::cmp::Reverse(sequences[i].rows));
    let mut groups = Vec::new();
    for members in [decode, prompt] {
        let mut group: Vec<usize> = Vec::new();
        let (mut queries, mut keys) = (0, 0);
        for i in members {
            let (rows, positions) = (sequences[i].rows, sequences[i].cache.blocks.len() * BLOCK);
            let grown = (queries.max(rows), keys.max(positions));
            let scores = heads * (group.len() + 1) * grown.0 * grown.1;
            if !group.is_empty() && (scores > max_scores || 2 * rows < queries) {
                groups.push(std::mem::take(&mut group));
                (queries, keys) = (rows, positions);
            } else {
                (queries, keys) = grown;
            }
            group.push(i);
        }
        if !group.is_empty() {
            groups.push(group);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYERS: usize = 2;
    const HEADS: usize = 2;
    const HEAD_DIM: usize = 4;

    fn pool() -> Arc<Pool> {
        Arc::new(Pool::new(LAYERS, HEADS, HEAD_DIM, DType::F32, Device::Cpu))
    }

    /// Writes `value` into `position`'s slot in every layer, keys and values, as a pass does.
    fn write(cache: &PagedCache, position: usize, value: f32) {
        let shape = (HEADS, 1, HEAD_DIM);
        let slot = Tensor::from_vec(
            vec![cache.slot(position); HEADS * HEAD_DIM],
            shape,
            &Device::Cpu,
        )
        .unwrap();
        let row = Tensor::full(value, shape, &Device::Cpu).unwrap();
        for l in 0..LAYERS {
            let (keys, values) = cache.pool.layer(l);
            keys.scatter_set(&slot, &row, 1).unwrap();
            values.scatter_set(&slot, &row, 1).unwrap();
        }
    }

    /// What `position` holds in the last layer's values.
    fn read(cache: &PagedCache, position: usize) -> f32 {
        let (_, values) = cache.pool.layer(LAYERS - 1);
        let slot = cache.slot(position) as usize;
        values
            .get(HEADS - 1)
            .unwrap()
            .get(slot)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0]
    }

    /// A cache of `len` positions, each holding its position.
    fn filled(pool: &Arc<Pool>, len: usize) -> PagedCache {
        let mut cache = PagedCache::new(Arc::clone(pool));
        cache.prepare(0, len).unwrap();
        for p in 0..len {
            write(&cache, p, p as f32);
        }
        cache
    }

    #[test]
    fn a_cache_holds_a_block_per_sixteen_positions_and_gives_them_back() {
        let pool = pool();
        let mut cache = filled(&pool, 20);
        assert_eq!((cache.blocks(), pool.in_use()), (2, 2));
        cache.prepare(20, 12).unwrap();
        assert_eq!(pool.in_use(), 2, "32 positions fit in two blocks");
        cache.prepare(32, 1).unwrap();
        assert_eq!(pool.in_use(), 3);
        cache.truncate(17);
        assert_eq!(
            (cache.blocks(), pool.in_use()),
            (2, 2),
            "undo gives blocks back"
        );
        drop(cache);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_fork_shares_every_block_and_copies_only_the_one_it_writes_into() {
        let pool = pool();
        let mut source = filled(&pool, 20);
        let mut fork = source.clone();
        assert_eq!(pool.in_use(), 2, "a fork copies nothing");
        fork.prepare(20, 1).unwrap();
        assert_eq!(pool.in_use(), 3, "the partly filled block, copied once");
        assert!(Arc::ptr_eq(&source.blocks[0], &fork.blocks[0]));
        assert!(!Arc::ptr_eq(&source.blocks[1], &fork.blocks[1]));
        assert_eq!((read(&fork, 17), read(&fork, 19)), (17.0, 19.0), "the copy");
        write(&fork, 20, -1.0);
        write(&fork, 19, -1.0);
        assert_eq!(
            read(&source, 19),
            19.0,
            "the source does not see the fork's writes"
        );
        source.prepare(20, 1).unwrap();
        assert_eq!(
            pool.in_use(),
            3,
            "the source's block 1 is its own now: nothing copied"
        );
        drop(fork);
        assert_eq!(pool.in_use(), 2);
        assert_eq!(read(&source, 19), 19.0);
    }

    #[test]
    fn a_fork_at_a_block_boundary_copies_nothing() {
        let pool = pool();
        let source = filled(&pool, 32);
        let mut fork = source.clone();
        fork.prepare(32, 1).unwrap();
        assert_eq!(pool.in_use(), 3, "two shared blocks and one new");
        assert!(fork.blocks[..2]
            .iter()
            .zip(&source.blocks)
            .all(|(a, b)| Arc::ptr_eq(a, b)));
    }

    #[test]
    fn growing_the_pool_keeps_what_caches_hold() {
        let pool = pool();
        pool.reserve(2).unwrap();
        let mut cache = filled(&pool, 32);
        let fork = cache.clone();
        cache.prepare(32, 40).unwrap();
        assert!(pool.lock().blocks >= 5);
        assert_eq!((read(&cache, 5), read(&fork, 31)), (5.0, 31.0));
    }

    #[test]
    fn prompt_chunks_attend_in_groups_of_like_lengths_and_bounded_scores() {
        let pool = pool();
        // (cached, new): two decode steps, then chunks of 40, 3, 24 and 17 rows.
        let shapes = [(10, 1), (0, 40), (70, 1), (5, 3), (0, 24), (16, 17)];
        let caches: Vec<PagedCache> = shapes
            .iter()
            .map(|&(past, rows)| {
                let mut cache = PagedCache::new(Arc::clone(&pool));
                cache.prepare(0, past + rows).unwrap();
                cache
            })
            .collect();
        let sequences: Vec<PassSequence> = caches
            .iter()
            .zip(shapes)
            .map(|(cache, (past, rows))| PassSequence { cache, past, rows })
            .collect();
        // Longest chunk first; 17 rows are under half of 40, and 3 under half of 17.
        let unbounded = group_members(&sequences, HEADS, usize::MAX);
        assert_eq!(unbounded, [vec![0, 2], vec![1, 4], vec![5], vec![3]]);
        // 40 and 24 rows padded to 40 against 48 key positions, two heads: 7,680 scores.
        let bounded = group_members(&sequences, HEADS, 7_679);
        assert_eq!(bounded, [vec![0, 2], vec![1], vec![4, 5], vec![3]]);
        // A pass's index puts every row back in its place whatever the grouping.
        let index = PassIndex::new(&sequences, &pool).unwrap();
        assert_eq!(index.groups.len(), 4);
        let queries: usize = index.groups.iter().map(|g| g.sequences * g.queries).sum();
        assert_eq!(queries, 2 + 2 * 40 + 17 + 3);
    }
}

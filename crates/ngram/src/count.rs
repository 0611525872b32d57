//! Counting: every k-gram of a sequence, k = 1…n, into one table of contexts per length.
//!
//! Every position's next n symbols are packed into one `u128` key (a digit of `bits` bits per
//! symbol) and the keys are sorted. Sorted, every context of every length c < n is a contiguous
//! run, and within it the symbols that followed are contiguous runs in ascending order, so one
//! pass per c counts them all, with no hash map or allocation per k-gram. That keeps training on
//! the bundled corpus fast even in unoptimised dev builds, where the services train their models
//! at startup.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::{Error, Result};

/// Everything counted from one sequence.
pub(crate) struct Counts<S> {
    /// The distinct symbols, ascending; a symbol's id is its index here, so ids sort like symbols.
    pub(crate) alphabet: Vec<S>,
    /// Bits of one digit of a packed key. A digit is an id + 1; 0 stands for "past the end".
    pub(crate) bits: u32,
    /// `tables[c]`: the contexts of length c (0..n) and what followed them.
    pub(crate) tables: Vec<Table>,
}

impl<S: Copy + Eq + Hash + Ord> Counts<S> {
    /// Counts the non-empty `sequence` for a valid order `n`.
    pub(crate) fn of(sequence: &[S], n: usize) -> Result<Self> {
        let (alphabet, ids) = intern(sequence, n)?;
        // Digits go up to alphabet.len() (ids are 0-based, digits 1-based).
        let bits = u64::BITS - (alphabet.len() as u64).leading_zeros();
        let mut keys = pack(&ids, n, bits);
        radix_sort(&mut keys, bits * n as u32);
        let tables = (0..n).map(|c| count_after(&keys, n, c, bits)).collect();
        Ok(Counts {
            alphabet,
            bits,
            tables,
        })
    }
}

/// The contexts of one length, each with the symbols that followed it and their counts.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    /// Packed contexts (their digits, most significant first), ascending.
    pub(crate) contexts: Vec<u128>,
    /// The followers of `contexts[i]` are `followers[starts[i]..starts[i + 1]]`.
    pub(crate) starts: Vec<usize>,
    /// The sum of the follower counts of `contexts[i]`.
    pub(crate) totals: Vec<u64>,
    /// (id, count), by count descending, then id ascending: the order of a distribution.
    pub(crate) followers: Vec<(u32, u64)>,
}

/// The distinct symbols of `sequence`, ascending, and `sequence` as indices into them.
fn intern<S: Copy + Eq + Hash + Ord>(sequence: &[S], n: usize) -> Result<(Vec<S>, Vec<u32>)> {
    // Ids in first-seen order first (one hash lookup per symbol), then renumbered by symbol
    // order so that nothing depends on how the map iterates.
    let mut first_seen: HashMap<S, u32, BuildHasherDefault<SymbolHasher>> = HashMap::default();
    let mut ids = Vec::with_capacity(sequence.len());
    for &symbol in sequence {
        let next = first_seen.len();
        let id = match first_seen.get(&symbol) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(next).map_err(|_| too_many(next + 1, n))?;
                first_seen.insert(symbol, id);
                id
            }
        };
        ids.push(id);
    }
    let distinct = first_seen.len();
    if distinct as u64 > max_symbols(n) {
        return Err(too_many(distinct, n));
    }
    let mut alphabet: Vec<S> = first_seen.keys().copied().collect();
    alphabet.sort_unstable();
    let mut renumbered = vec![0u32; distinct];
    for (rank, symbol) in alphabet.iter().enumerate() {
        renumbered[first_seen[symbol] as usize] = rank as u32;
    }
    for id in &mut ids {
        *id = renumbered[*id as usize];
    }
    Ok((alphabet, ids))
}

/// FxHash's multiplicative hash, for interning. The default SipHash resists keys chosen to
/// collide, but costs more than the rest of training put together in an unoptimised build, and
/// the symbols come from a corpus the operator chose, not from requests.
#[derive(Default)]
struct SymbolHasher(u64);

impl Hasher for SymbolHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
}

/// The most distinct symbols order `n` supports: n digits must fit in a `u128` key, and ids in
/// a `u32`.
fn max_symbols(n: usize) -> u64 {
    let bits = 128 / n as u32;
    if bits >= 32 {
        u64::from(u32::MAX)
    } else {
        (1 << bits) - 1
    }
}

fn too_many(distinct: usize, n: usize) -> Error {
    Error::TooManySymbols {
        distinct,
        n,
        max: max_symbols(n),
    }
}

/// One key per position: the digits of the n symbols starting there, most significant first,
/// with 0s past the end of the corpus (so a k-gram near the end sorts before its extensions).
fn pack(ids: &[u32], n: usize, bits: u32) -> Vec<u128> {
    let width = bits * n as u32;
    let mask = if width == 128 {
        u128::MAX
    } else {
        (1 << width) - 1
    };
    let digit = |i: usize| ids.get(i).map_or(0, |&id| u128::from(id) + 1);
    // Each key is the previous one shifted by a digit with the next symbol coming in.
    let mut key = (0..n - 1).fold(0u128, |key, i| (key << bits) | digit(i));
    (0..ids.len())
        .map(|i| {
            key = ((key << bits) | digit(i + n - 1)) & mask;
            key
        })
        .collect()
}

/// Sorts keys below 2^`width` by least-significant-digit radix sort: linear in the keys, and
/// several times faster than `sort_unstable` in an unoptimised build.
fn radix_sort(keys: &mut Vec<u128>, width: u32) {
    const DIGIT_BITS: u32 = 11;
    const BUCKETS: usize = 1 << DIGIT_BITS;
    let mut sorted = vec![0; keys.len()];
    let mut shift = 0;
    while shift < width {
        let bucket = |key: u128| (key >> shift) as usize & (BUCKETS - 1);
        let mut offsets = vec![0usize; BUCKETS];
        for &key in keys.iter() {
            offsets[bucket(key)] += 1;
        }
        let mut sum = 0;
        for offset in &mut offsets {
            (sum, *offset) = (sum + *offset, sum);
        }
        for &key in keys.iter() {
            let b = bucket(key);
            sorted[offsets[b]] = key;
            offsets[b] += 1;
        }
        std::mem::swap(keys, &mut sorted);
        shift += DIGIT_BITS;
    }
}

/// The table of contexts of length `c` from the sorted keys: the first c digits of a key are a
/// context, the next digit what followed it.
fn count_after(keys: &[u128], n: usize, c: usize, bits: u32) -> Table {
    // For c = 0 the shift is the whole key width, which may be 128: every context is then 0.
    let context_shift = bits * (n - c) as u32;
    let next_shift = bits * (n - 1 - c) as u32;
    let digit_mask = (1u128 << bits) - 1;
    let mut table = Table {
        contexts: Vec::new(),
        starts: vec![0],
        totals: Vec::new(),
        followers: Vec::new(),
    };
    let mut current = None;
    let mut group: Vec<(u32, u64)> = Vec::new();
    for &key in keys {
        let next = (key >> next_shift) & digit_mask;
        if next == 0 {
            // The context ends the corpus; nothing followed it.
            continue;
        }
        let context = key.checked_shr(context_shift).unwrap_or(0);
        if current != Some(context) {
            if let Some(done) = current {
                table.push(done, &mut group);
            }
            current = Some(context);
        }
        let id = (next - 1) as u32;
        match group.last_mut() {
            Some((last, count)) if *last == id => *count += 1,
            _ => group.push((id, 1)),
        }
    }
    if let Some(done) = current {
        table.push(done, &mut group);
    }
    table
}

impl Table {
    /// Appends `context` with the followers collected in `group` (ids ascending), emptying it.
    fn push(&mut self, context: u128, group: &mut Vec<(u32, u64)>) {
        // Stable, so equal counts stay in id order.
        group.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
        self.contexts.push(context);
        self.totals
            .push(group.iter().map(|&(_, count)| count).sum());
        self.followers.append(group);
        self.starts.push(self.followers.len());
    }
}

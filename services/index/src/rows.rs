//! A collection's points in memory, as the search structures read them: one contiguous
//! `Vec<f32>` of rows, the id ↔ row maps, the parsed payloads (for filters) and the texts.
//! Rows are only appended; a deleted or overwritten point leaves a tombstone, because the HNSW
//! graph names rows by number. [`Rows::compacted`] drops the tombstones (and so renumbers the
//! rows, after which any graph must be rebuilt).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::types::{NewPoint, Record, With};

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Rows {
    dim: usize,
    data: Vec<f32>,
    ids: Vec<Arc<str>>,
    payloads: Vec<Map<String, Value>>,
    texts: Vec<Option<Box<str>>>,
    live: Vec<bool>,
    dead: usize,
    by_id: HashMap<Arc<str>, u32>,
}

impl Rows {
    pub fn new(dim: usize) -> Self {
        Rows {
            dim,
            data: Vec::new(),
            ids: Vec::new(),
            payloads: Vec::new(),
            texts: Vec::new(),
            live: Vec::new(),
            dead: 0,
            by_id: HashMap::new(),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows held, tombstones included: the range of row numbers.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Points stored (rows that are not tombstones).
    pub fn live_count(&self) -> usize {
        self.len() - self.dead
    }

    /// Tombstones.
    pub fn dead_count(&self) -> usize {
        self.dead
    }

    pub fn is_live(&self, row: u32) -> bool {
        self.live[row as usize]
    }

    pub fn vector(&self, row: u32) -> &[f32] {
        let start = row as usize * self.dim;
        &self.data[start..start + self.dim]
    }

    pub fn id(&self, row: u32) -> &str {
        &self.ids[row as usize]
    }

    pub fn payload(&self, row: u32) -> &Map<String, Value> {
        &self.payloads[row as usize]
    }

    /// The live row of `id`.
    pub fn row_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Appends `points` (of this dimension, ids unique among them), turning any earlier rows
    /// of the same ids into tombstones. Returns the first new row.
    pub fn upsert(&mut self, points: Vec<NewPoint>) -> u32 {
        let first = self.len() as u32;
        self.data.reserve(points.len() * self.dim);
        for point in points {
            debug_assert_eq!(point.vector.len(), self.dim);
            self.remove(&point.id);
            let row = self.len() as u32;
            let id: Arc<str> = point.id.into();
            self.data.extend_from_slice(&point.vector);
            self.by_id.insert(id.clone(), row);
            self.ids.push(id);
            self.payloads.push(point.payload);
            self.texts.push(point.text.map(String::into_boxed_str));
            self.live.push(true);
        }
        first
    }

    /// Turns the row of `id` into a tombstone; whether it existed.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(row) = self.by_id.remove(id) else {
            return false;
        };
        let row = row as usize;
        self.live[row] = false;
        self.dead += 1;
        // The vector stays (the graph may still route through it); the rest can go.
        self.payloads[row] = Map::new();
        self.texts[row] = None;
        true
    }

    /// The same points without tombstones, rows renumbered in their old order.
    pub fn compacted(&self) -> Rows {
        let mut out = Rows::new(self.dim);
        let live = self.live_count();
        out.data.reserve(live * self.dim);
        for row in (0..self.len() as u32).filter(|&r| self.is_live(r)) {
            let id = self.ids[row as usize].clone();
            out.data.extend_from_slice(self.vector(row));
            out.by_id.insert(id.clone(), out.ids.len() as u32);
            out.ids.push(id);
            out.payloads.push(self.payloads[row as usize].clone());
            out.texts.push(self.texts[row as usize].clone());
            out.live.push(true);
        }
        out
    }

    /// A row as returned to a client.
    pub fn record(&self, row: u32, score: f32, with: With) -> Record {
        let row_ = row as usize;
        Record {
            id: self.ids[row_].to_string(),
            score,
            payload: with.payload.then(|| {
                serde_json::to_string(&self.payloads[row_])
                    .expect("a JSON map always serialises; this is a bug")
            }),
            text: if with.payload {
                self.texts[row_].as_deref().map(String::from)
            } else {
                None
            },
            vector: with.vector.then(|| self.vector(row).to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: &str, x: f32) -> NewPoint {
        NewPoint {
            id: id.into(),
            vector: vec![x, -x],
            payload: Map::new(),
            text: None,
        }
    }

    #[test]
    fn overwrites_and_deletes_leave_tombstones_that_compaction_drops() {
        let mut rows = Rows::new(2);
        assert_eq!(rows.upsert(vec![point("a", 1.0), point("b", 2.0)]), 0);
        assert_eq!(rows.upsert(vec![point("a", 3.0)]), 2);
        assert_eq!(
            (rows.len(), rows.live_count(), rows.dead_count()),
            (3, 2, 1)
        );
        assert_eq!(rows.vector(rows.row_of("a").unwrap()), [3.0, -3.0]);
        assert!(rows.remove("b"));
        assert!(!rows.remove("b"));
        let compact = rows.compacted();
        assert_eq!((compact.len(), compact.live_count()), (1, 1));
        assert_eq!(compact.row_of("a"), Some(0));
        assert_eq!(compact.vector(0), [3.0, -3.0]);
    }
}

//! The memory planner: tensors that are never alive together share one
//! buffer. Greedy by size over lifetimes (the "shared objects" strategy of
//! arXiv 2001.03288, as ratchet uses): largest tensor first, each into the
//! first existing slot whose tenants' lifetimes it does not overlap.

use serde::Serialize;

/// A tensor's life in step order: written at node `first`, last read at
/// node `last` (inclusive on both ends, so a node's inputs and outputs never
/// share a slot — a dispatch may not bind one buffer both read and write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub first: usize,
    pub last: usize,
    pub bytes: u64,
}

impl Lifetime {
    fn overlaps(&self, o: &Lifetime) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryPlan {
    /// Slot of each planned tensor (None for tensors not planned: persistent
    /// ones such as parameters, which own their buffers).
    pub slot_of: Vec<Option<usize>>,
    /// Size of each slot: the largest of its tenants.
    pub slot_bytes: Vec<u64>,
    /// Bytes of all slots: the planned peak of the shared tensors.
    pub planned_bytes: u64,
    /// Bytes if every planned tensor had its own buffer.
    pub unshared_bytes: u64,
}

/// Assign each `Some(lifetime)` to a slot; `None` entries stay unplanned.
pub fn plan(lifetimes: &[Option<Lifetime>]) -> MemoryPlan {
    let mut order: Vec<usize> = (0..lifetimes.len())
        .filter(|&i| lifetimes[i].is_some())
        .collect();
    // Largest first; ties by first use, then index, so plans are stable.
    order.sort_by_key(|&i| {
        let l = lifetimes[i].unwrap();
        (std::cmp::Reverse(l.bytes), l.first, i)
    });
    let mut slot_of = vec![None; lifetimes.len()];
    let mut slot_bytes: Vec<u64> = Vec::new();
    let mut tenants: Vec<Vec<Lifetime>> = Vec::new();
    for i in order {
        let l = lifetimes[i].unwrap();
        let free = (0..slot_bytes.len()).find(|&s| tenants[s].iter().all(|t| !t.overlaps(&l)));
        let s = free.unwrap_or_else(|| {
            slot_bytes.push(0);
            tenants.push(Vec::new());
            slot_bytes.len() - 1
        });
        slot_bytes[s] = slot_bytes[s].max(l.bytes);
        tenants[s].push(l);
        slot_of[i] = Some(s);
    }
    MemoryPlan {
        planned_bytes: slot_bytes.iter().sum(),
        unshared_bytes: lifetimes.iter().flatten().map(|l| l.bytes).sum(),
        slot_of,
        slot_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;

    fn lt(first: usize, last: usize, bytes: u64) -> Option<Lifetime> {
        Some(Lifetime { first, last, bytes })
    }

    #[test]
    fn a_chain_needs_two_slots() {
        // x0 -> x1 -> x2 -> x3: each lives from its node to the next.
        let l: Vec<_> = (0..4).map(|i| lt(i, i + 1, 100)).collect();
        let p = plan(&l);
        assert_eq!(p.slot_bytes.len(), 2);
        assert_eq!(p.planned_bytes, 200);
        assert_eq!(p.unshared_bytes, 400);
    }

    #[test]
    fn random_plans_never_share_live_tensors() {
        let mut rng = crate::verify::rng(7);
        for _ in 0..200 {
            let n = rng.random_range(1..40);
            let l: Vec<Option<Lifetime>> = (0..n)
                .map(|_| {
                    if rng.random_bool(0.1) {
                        return None;
                    }
                    let a = rng.random_range(0..30);
                    lt(a, a + rng.random_range(0..8), rng.random_range(1..1000))
                })
                .collect();
            let p = plan(&l);
            for i in 0..n {
                for j in i + 1..n {
                    if let (Some(a), Some(b)) = (l[i], l[j]) {
                        if a.overlaps(&b) {
                            assert_ne!(p.slot_of[i], p.slot_of[j], "{a:?} and {b:?} share");
                        }
                    }
                }
                if let Some(a) = l[i] {
                    assert!(p.slot_bytes[p.slot_of[i].unwrap()] >= a.bytes);
                } else {
                    assert!(p.slot_of[i].is_none());
                }
            }
            assert!(p.planned_bytes <= p.unshared_bytes);
        }
    }
}

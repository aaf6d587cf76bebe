//! Bélády's MIN: evict the key whose next use is furthest in the future.
//! The offline upper bound every online policy is compared with.

use std::collections::{BTreeSet, HashMap};

use super::trace::Request;

/// Hits of Bélády's policy on `trace` with `capacity` total weight. For
/// weighted traces it evicts by next use alone, ignoring size (libCacheSim's
/// `Belady`), so it is a reference, not a strict bound.
pub fn belady_hits(trace: &[Request], capacity: u64) -> u64 {
    let never = u64::MAX;
    let mut next_use = vec![never; trace.len()];
    let mut seen: HashMap<u64, usize> = HashMap::with_capacity(trace.len() / 4);
    for (i, r) in trace.iter().enumerate().rev() {
        if let Some(&j) = seen.get(&r.key) {
            next_use[i] = j as u64;
        }
        seen.insert(r.key, i);
    }
    drop(seen);

    // Resident keys ordered by next use; ties ("never again") broken by key.
    let mut by_next: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut resident: HashMap<u64, (u64, u64)> = HashMap::new(); // key -> (next, weight)
    let mut used = 0u64;
    let mut hits = 0u64;
    for (i, r) in trace.iter().enumerate() {
        let next = next_use[i];
        if let Some((old_next, weight)) = resident.get(&r.key).copied() {
            hits += 1;
            by_next.remove(&(old_next, r.key));
            by_next.insert((next, r.key));
            resident.insert(r.key, (next, weight));
            continue;
        }
        if r.weight > capacity || next == never {
            // Never used again: caching it cannot help (bypass).
            continue;
        }
        while used + r.weight > capacity {
            let Some(&(victim_next, victim)) = by_next.last() else {
                break;
            };
            if victim_next < next {
                break;
            }
            by_next.remove(&(victim_next, victim));
            if let Some((_, w)) = resident.remove(&victim) {
                used -= w;
            }
        }
        if used + r.weight <= capacity {
            by_next.insert((next, r.key));
            resident.insert(r.key, (next, r.weight));
            used += r.weight;
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(keys: &[u64]) -> Vec<Request> {
        keys.iter().map(|&key| Request { key, weight: 1 }).collect()
    }

    #[test]
    fn belady_on_a_loop_keeps_a_fixed_set() {
        // A loop over 3 keys with room for 2: OPT keeps 1 and 2 and lets 3
        // pass through.
        let trace = unit(&[1, 2, 3, 1, 2, 3, 1, 2, 3]);
        assert_eq!(belady_hits(&trace, 2), 4);
        assert_eq!(belady_hits(&trace, 3), 6);
        assert_eq!(belady_hits(&trace, 0), 0);
    }
}

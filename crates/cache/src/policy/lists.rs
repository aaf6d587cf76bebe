//! Several intrusive doubly linked lists of keys over one slab: O(1) push,
//! move and remove without an allocation per operation.

use super::hash::U64Map;

const NIL: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Node {
    key: u64,
    weight: u64,
    prev: u32,
    next: u32,
    list: u8,
}

#[derive(Clone, Debug, Default)]
struct Ends {
    head: u32, // least recently used end
    tail: u32, // most recently used end
    len: usize,
    weight: u64,
}

/// `N` lists of keys, each ordered from least to most recently used.
#[derive(Debug)]
pub(crate) struct Lists<const N: usize> {
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: U64Map<u32>,
    ends: [Ends; N],
}

impl<const N: usize> Lists<N> {
    pub(crate) fn new() -> Self {
        Lists {
            nodes: Vec::new(),
            free: Vec::new(),
            index: U64Map::default(),
            ends: std::array::from_fn(|_| Ends {
                head: NIL,
                tail: NIL,
                len: 0,
                weight: 0,
            }),
        }
    }

    /// The list `key` is in.
    pub(crate) fn list_of(&self, key: u64) -> Option<usize> {
        self.index
            .get(&key)
            .map(|&i| usize::from(self.nodes[i as usize].list))
    }

    pub(crate) fn weight_of(&self, key: u64) -> Option<u64> {
        self.index.get(&key).map(|&i| self.nodes[i as usize].weight)
    }

    pub(crate) fn weight(&self, list: usize) -> u64 {
        self.ends[list].weight
    }

    pub(crate) fn total_len(&self) -> usize {
        self.index.len()
    }

    /// The least recently used key of `list`.
    pub(crate) fn lru(&self, list: usize) -> Option<u64> {
        let head = self.ends[list].head;
        (head != NIL).then(|| self.nodes[head as usize].key)
    }

    /// The key after `key` (present) towards the most recently used end of
    /// its list.
    pub(crate) fn newer(&self, key: u64) -> Option<u64> {
        let next = self.nodes[*self.index.get(&key)? as usize].next;
        (next != NIL).then(|| self.nodes[next as usize].key)
    }

    /// Adds `key` (not present) at the most recently used end of `list`.
    pub(crate) fn push(&mut self, list: usize, key: u64, weight: u64) {
        let node = Node {
            key,
            weight,
            prev: NIL,
            next: NIL,
            list: list as u8,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
        self.link_tail(list, i);
    }

    /// Moves `key` (present) to the most recently used end of `list`.
    pub(crate) fn move_to(&mut self, list: usize, key: u64) {
        if let Some(&i) = self.index.get(&key) {
            self.unlink(i);
            self.link_tail(list, i);
        }
    }

    /// Removes `key`, returning its list and weight.
    pub(crate) fn remove(&mut self, key: u64) -> Option<(usize, u64)> {
        let i = self.index.remove(&key)?;
        let list = usize::from(self.nodes[i as usize].list);
        let weight = self.nodes[i as usize].weight;
        self.unlink(i);
        self.free.push(i);
        Some((list, weight))
    }

    /// Changes the weight of `key` (present).
    pub(crate) fn set_weight(&mut self, key: u64, weight: u64) {
        if let Some(&i) = self.index.get(&key) {
            let node = &mut self.nodes[i as usize];
            let ends = &mut self.ends[usize::from(node.list)];
            ends.weight = ends.weight - node.weight + weight;
            node.weight = weight;
        }
    }

    fn link_tail(&mut self, list: usize, i: u32) {
        let tail = self.ends[list].tail;
        {
            let node = &mut self.nodes[i as usize];
            node.list = list as u8;
            node.prev = tail;
            node.next = NIL;
        }
        if tail == NIL {
            self.ends[list].head = i;
        } else {
            self.nodes[tail as usize].next = i;
        }
        let ends = &mut self.ends[list];
        ends.tail = i;
        ends.len += 1;
        ends.weight += self.nodes[i as usize].weight;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, list, weight) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next, usize::from(n.list), n.weight)
        };
        if prev == NIL {
            self.ends[list].head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.ends[list].tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        let ends = &mut self.ends[list];
        ends.len -= 1;
        ends.weight -= weight;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_keep_order_length_and_weight() {
        let mut l: Lists<2> = Lists::new();
        for k in 1..=4 {
            l.push(0, k, k * 10);
        }
        assert_eq!((l.ends[0].len, l.weight(0), l.lru(0)), (4, 100, Some(1)));
        l.move_to(0, 1);
        assert_eq!(l.lru(0), Some(2));
        l.move_to(1, 2);
        assert_eq!((l.ends[0].len, l.ends[1].len, l.lru(1)), (3, 1, Some(2)));
        assert_eq!(l.list_of(2), Some(1));
        assert_eq!(l.remove(3), Some((0, 30)));
        assert_eq!(l.remove(3), None);
        l.set_weight(4, 5);
        assert_eq!(l.weight(0), 15);
        l.push(1, 9, 1); // reuses the freed slot
        assert_eq!((l.total_len(), l.lru(0), l.lru(1)), (4, Some(4), Some(2)));
        while let Some(k) = l.lru(0) {
            l.remove(k);
        }
        assert_eq!((l.ends[0].len, l.weight(0), l.lru(0)), (0, 0, None));
    }
}

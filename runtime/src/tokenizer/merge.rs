//! The BPE merge loop, step for step the `tokenizers` crate's `Word::merge_all`: a
//! heap of candidate pairs ordered by (rank, position), lazily invalidated, so ties
//! go to the leftmost pair and the output ids are identical.
use super::tables::Bpe;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: usize,
    next: usize,
    /// False once merged into its left neighbour.
    alive: bool,
}

const END: usize = usize::MAX;

/// Buffers reused across the words of one text.
#[derive(Default)]
pub(super) struct Scratch {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Reverse<(u32, usize, u32)>>,
}

/// Appends the ids of one pre-token (`word`, raw bytes) to `out`.
pub(super) fn merge_word(bpe: &Bpe<'_>, word: &[u8], s: &mut Scratch, out: &mut Vec<u32>) {
    s.symbols.clear();
    s.heap.clear();
    // One symbol per byte the vocabulary knows (unknown bytes are dropped).
    for &b in word {
        if let Some(id) = bpe.byte_id(b) {
            let i = s.symbols.len();
            s.symbols.push(Symbol {
                id,
                prev: i.wrapping_sub(1),
                next: i + 1,
                alive: true,
            });
        }
    }
    let n = s.symbols.len();
    if n == 0 {
        return;
    }
    s.symbols[0].prev = END;
    s.symbols[n - 1].next = END;
    for i in 0..n - 1 {
        if let Some((rank, new_id)) = bpe.merge(s.symbols[i].id, s.symbols[i + 1].id) {
            s.heap.push(Reverse((rank, i, new_id)));
        }
    }
    while let Some(Reverse((_, pos, new_id))) = s.heap.pop() {
        let cur = s.symbols[pos];
        if !cur.alive || cur.next == END {
            continue;
        }
        let right = s.symbols[cur.next];
        // Stale entry: the pair at `pos` changed since it was queued. (Checked by the
        // merged id alone, exactly as the reference does.)
        if bpe.merge(cur.id, right.id).map(|m| m.1) != Some(new_id) {
            continue;
        }
        s.symbols[pos].id = new_id;
        s.symbols[pos].next = right.next;
        s.symbols[cur.next].alive = false;
        if right.next != END {
            s.symbols[right.next].prev = pos;
        }
        let cur = s.symbols[pos];
        if cur.prev != END {
            if let Some((rank, id)) = bpe.merge(s.symbols[cur.prev].id, cur.id) {
                s.heap.push(Reverse((rank, cur.prev, id)));
            }
        }
        if cur.next != END {
            if let Some((rank, id)) = bpe.merge(cur.id, s.symbols[cur.next].id) {
                s.heap.push(Reverse((rank, pos, id)));
            }
        }
    }
    out.extend(s.symbols.iter().filter(|s| s.alive).map(|s| s.id));
}

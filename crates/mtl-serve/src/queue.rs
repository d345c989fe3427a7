//! The model thread's queue: which queued texts form the next batch.
//!
//! Requests take turns, and each turn runs one batch holding the longest remaining text of the
//! request whose turn it is. The rest of the batch is a window of all queued texts (of every
//! request) sorted by length: the texts just shorter than that one (the request's own first
//! among equal lengths), then, if those run out, the ones just longer, within the
//! padded-token budget (texts × the batch's longest). So batches pad as little as when every
//! queued text is sorted together, and every turn serves its request.
//!
//! Whose turn it is: requests that have not had one yet get every other turn, alternately the
//! one with the fewest texts (the first of those) and the one that came first; the requests
//! that have had one take the other turns in a rotation. So a one-text request that arrives
//! while eight 256-text requests are at work, or wait to start, runs within four batches
//! (first come, first served would run it after their 2,048 texts), a big request keeps
//! getting every other turn however many new requests arrive, and a new big request gets its
//! first turn at the latest when it has become the oldest new one: none starves. A batch holds one kind of work
//! (embeddings or predictions), that of the request whose turn it is. Requests whose client
//! has gone are dropped, with their texts, whenever a batch is formed.

use std::collections::VecDeque;

/// One request's queued texts.
struct Waiting<K, T> {
    /// The request's key, chosen by the caller.
    key: u64,
    /// Its kind of work: a batch holds one.
    kind: K,
    /// Its texts not yet batched, longest first: (index in the request, tokens, text).
    texts: VecDeque<(usize, usize, T)>,
}

/// The queued requests.
pub(crate) struct FairQueue<K, T> {
    /// Requests that have not had a turn yet, in arrival order.
    fresh: VecDeque<Waiting<K, T>>,
    /// Requests that have had a turn, in the order of their next turns.
    rotation: VecDeque<Waiting<K, T>>,
    /// Whether the next turn goes to `fresh` (when both have requests).
    fresh_next: bool,
    /// Whether `fresh`'s next turn goes to its smallest request (else to its oldest).
    smallest_next: bool,
}

/// The texts of one model batch, all of one kind.
pub(crate) struct Batch<K, T> {
    /// Their kind.
    pub kind: K,
    /// (request key, index in the request, text), in the order they were taken.
    pub texts: Vec<(u64, usize, T)>,
}

impl<K: Copy + PartialEq, T> FairQueue<K, T> {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        Self {
            fresh: VecDeque::new(),
            rotation: VecDeque::new(),
            fresh_next: true,
            smallest_next: true,
        }
    }

    /// Whether no text waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.rotation.is_empty()
    }

    /// Queues a request's texts (`tokens` gives each text's length); a request without texts
    /// is not queued.
    pub(crate) fn push(&mut self, key: u64, kind: K, texts: Vec<T>, tokens: impl Fn(&T) -> usize) {
        if texts.is_empty() {
            return;
        }
        let mut texts: Vec<(usize, usize, T)> = texts
            .into_iter()
            .enumerate()
            .map(|(i, t)| (i, tokens(&t), t))
            .collect();
        // Stable: equal lengths keep the request's order.
        texts.sort_by_key(|&(_, tokens, _)| std::cmp::Reverse(tokens));
        self.fresh.push_back(Waiting {
            key,
            kind,
            texts: texts.into(),
        });
    }

    /// Drops every request for which `gone(key)` is true; returns their keys and how many texts
    /// they had left.
    pub(crate) fn drop_gone(&mut self, gone: impl Fn(u64) -> bool) -> (Vec<u64>, usize) {
        let mut keys = Vec::new();
        let mut texts = 0;
        for line in [&mut self.fresh, &mut self.rotation] {
            line.retain(|w| {
                let keep = !gone(w.key);
                if !keep {
                    keys.push(w.key);
                    texts += w.texts.len();
                }
                keep
            });
        }
        (keys, texts)
    }

    /// The position in `fresh` of the request with the fewest texts (the first of those).
    fn smallest_fresh(&self) -> usize {
        self.fresh
            .iter()
            .enumerate()
            .min_by_key(|(i, w)| (w.texts.len(), *i))
            .map_or(0, |(i, _)| i)
    }

    /// The next batch of at most `max_batch_tokens` padded tokens (at least one text), or
    /// `None` when nothing waits.
    pub(crate) fn next_batch(&mut self, max_batch_tokens: usize) -> Option<Batch<K, T>> {
        let from_fresh = !self.fresh.is_empty() && (self.rotation.is_empty() || self.fresh_next);
        let mut head = if from_fresh {
            let first = if self.smallest_next {
                self.smallest_fresh()
            } else {
                0
            };
            self.smallest_next = !self.smallest_next;
            self.fresh.remove(first)
        } else {
            self.rotation.pop_front()
        }?;
        self.fresh_next = !from_fresh;
        let kind = head.kind;
        let mut others: Vec<&mut Waiting<K, T>> = self
            .fresh
            .iter_mut()
            .chain(self.rotation.iter_mut())
            .filter(|w| w.kind == kind)
            .collect();
        let texts = take_window(&mut head, &mut others, max_batch_tokens);
        // The request whose turn it was goes to the back of the rotation if it has texts left;
        // requests that have none left leave.
        if !head.texts.is_empty() {
            self.rotation.push_back(head);
        }
        self.fresh.retain(|w| !w.texts.is_empty());
        self.rotation.retain(|w| !w.texts.is_empty());
        Some(Batch { kind, texts })
    }
}

/// Texts taken out of one request: (position, (index in the request, tokens, text)).
type Taken<T> = Vec<(usize, (usize, usize, T))>;

/// Takes one batch's texts: the head request's longest text, then the queued texts just
/// shorter than it (of every request of the kind; the head's own first among equal lengths),
/// longest first, while the batch stays within `max_batch_tokens` padded tokens, then, when the
/// shorter texts run out first, the texts just longer than it. A batch is so a window of all
/// queued texts sorted by length, as little padding as when every text is sorted together,
/// and it always holds the head's longest text.
fn take_window<K, T>(
    head: &mut Waiting<K, T>,
    others: &mut [&mut Waiting<K, T>],
    max_batch_tokens: usize,
) -> Vec<(u64, usize, T)> {
    // (tokens, owner: 0 the head, i > 0 others[i - 1], position in the owner's texts)
    let mut sorted: Vec<(usize, usize, usize)> = std::iter::once(&*head)
        .chain(others.iter().map(|w| &**w))
        .enumerate()
        .flat_map(|(owner, w)| {
            w.texts
                .iter()
                .enumerate()
                .map(move |(pos, &(_, tokens, _))| (tokens, owner, pos))
        })
        .collect();
    sorted.sort_unstable_by_key(|&(tokens, owner, pos)| (std::cmp::Reverse(tokens), owner, pos));
    let fits = |count: usize, longest: usize| count * longest.max(1) <= max_batch_tokens;
    let first = sorted
        .iter()
        .position(|&(_, owner, pos)| owner == 0 && pos == 0)
        .expect("the head has a text");
    let (mut start, mut end) = (first, first + 1);
    while end < sorted.len() && fits(end - start + 1, sorted[start].0) {
        end += 1;
    }
    while start > 0 && fits(end - start + 1, sorted[start - 1].0) {
        start -= 1;
    }
    let window = &sorted[start..end];
    // Out of each owner's texts, from the last position down (positions stay valid).
    let mut taken: Vec<Taken<T>> = Vec::new();
    taken.resize_with(others.len() + 1, Vec::new);
    let mut positions: Vec<(usize, usize)> = window.iter().map(|&(_, o, p)| (o, p)).collect();
    positions.sort_unstable_by_key(|&(owner, pos)| (owner, std::cmp::Reverse(pos)));
    for (owner, pos) in positions {
        let texts = if owner == 0 {
            &mut head.texts
        } else {
            &mut others[owner - 1].texts
        };
        let text = texts.remove(pos).expect("a queued text");
        taken[owner].push((pos, text));
    }
    let keys: Vec<u64> = std::iter::once(head.key)
        .chain(others.iter().map(|w| w.key))
        .collect();
    // Back in the window's order.
    let mut batch = Vec::with_capacity(window.len());
    for &(_, owner, pos) in window {
        let at = taken[owner]
            .iter()
            .position(|&(p, _)| p == pos)
            .expect("taken above");
        let (_, (index, _, text)) = taken[owner].swap_remove(at);
        batch.push((keys[owner], index, text));
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts are their own lengths.
    fn push(queue: &mut FairQueue<char, usize>, key: u64, kind: char, lengths: &[usize]) {
        queue.push(key, kind, lengths.to_vec(), |&t| t);
    }

    /// The (request, index) pairs of the next batch.
    fn next(queue: &mut FairQueue<char, usize>, budget: usize) -> Vec<(u64, usize)> {
        queue
            .next_batch(budget)
            .map(|b| b.texts.iter().map(|&(k, i, _)| (k, i)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_request_runs_its_longest_texts_first_within_the_budget() {
        let mut queue = FairQueue::new();
        push(&mut queue, 1, 'e', &[10, 50, 50, 100, 10, 10]);
        // 100 alone would allow 2 texts of 100: the second (50) makes 2 x 100 = 200.
        assert_eq!(next(&mut queue, 200), [(1, 3), (1, 1)]);
        // 50, 10, 10, 10: 4 x 50 = 200.
        assert_eq!(next(&mut queue, 200), [(1, 2), (1, 0), (1, 4), (1, 5)]);
        assert!(queue.is_empty());
        assert!(queue.next_batch(200).is_none());
    }

    #[test]
    fn a_text_longer_than_the_budget_runs_alone() {
        let mut queue = FairQueue::new();
        push(&mut queue, 1, 'e', &[300, 10]);
        assert_eq!(next(&mut queue, 200), [(1, 0)]);
        assert_eq!(next(&mut queue, 200), [(1, 1)]);
    }

    /// How many texts wait.
    fn waiting(queue: &FairQueue<char, usize>) -> usize {
        let line =
            |l: &VecDeque<Waiting<char, usize>>| -> usize { l.iter().map(|w| w.texts.len()).sum() };
        line(&queue.fresh) + line(&queue.rotation)
    }

    #[test]
    fn a_short_request_runs_within_two_batches_of_big_ones_at_work() {
        let mut queue = FairQueue::new();
        for key in 0..8 {
            push(&mut queue, key, 'e', &[10; 256]);
        }
        // Every big request has its first turn (16 batches: 8 first turns, 8 rotation turns).
        for _ in 0..16 {
            assert_eq!(next(&mut queue, 200).len(), 20);
        }
        assert!(queue.fresh.is_empty());
        push(&mut queue, 99, 'e', &[10]);
        let first = next(&mut queue, 200);
        let second = next(&mut queue, 200);
        assert!(
            first.contains(&(99, 0)) || second.contains(&(99, 0)),
            "{first:?} {second:?}"
        );
    }

    #[test]
    fn requests_that_have_run_get_every_other_batch_however_many_new_ones_arrive() {
        let mut queue = FairQueue::new();
        push(&mut queue, 0, 'e', &[10; 1000]);
        assert_eq!(next(&mut queue, 100).len(), 10);
        let mut big = 0;
        for key in 1..=100 {
            // A new request of 10 texts before every batch: each fills a batch of its own.
            push(&mut queue, key, 'e', &[10; 10]);
            if next(&mut queue, 100).iter().any(|&(k, _)| k == 0) {
                big += 1;
            }
        }
        assert_eq!(big, 50);
        assert!(waiting(&queue) > 0);
    }

    #[test]
    fn batches_pad_as_little_as_when_every_text_is_sorted_together() {
        let mut queue = FairQueue::new();
        push(&mut queue, 1, 'e', &[100, 10]);
        push(&mut queue, 2, 'e', &[100, 10]);
        // The two long texts together, then the two short ones: 2 x 100 + 2 x 10 padded tokens
        // (a batch per request would pad 2 x 100 twice).
        assert_eq!(next(&mut queue, 200), [(1, 0), (2, 0)]);
        assert_eq!(next(&mut queue, 200), [(1, 1), (2, 1)]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_short_text_alone_in_its_turn_takes_longer_texts_that_fit() {
        let mut queue = FairQueue::new();
        push(&mut queue, 1, 'e', &[40, 40, 40]);
        push(&mut queue, 2, 'e', &[10]);
        // Request 2's turn (the fewest texts): its text, and the longer ones that fit
        // (4 x 40 <= 200), longest first.
        assert_eq!(next(&mut queue, 200), [(1, 0), (1, 1), (1, 2), (2, 0)]);
        assert!(queue.is_empty());
    }

    #[test]
    fn new_requests_take_first_turns_alternately_smallest_and_oldest() {
        let mut queue = FairQueue::new();
        push(&mut queue, 0, 'e', &[10; 100]);
        let mut heads = Vec::new();
        for turn in 0..4 {
            // A smaller new request arrives before every batch; each fills its batch and is
            // done, so every turn is a first turn.
            push(&mut queue, 100 + turn, 'e', &[10; 5]);
            heads.push(next(&mut queue, 50)[0].0);
        }
        // The smallest new request, then the oldest (the big one), then the rotation's turn (the
        // big one again), then the smallest new one.
        assert_eq!(heads, [100, 0, 0, 101]);
    }

    #[test]
    fn many_new_big_requests_delay_a_small_one_by_four_batches_at_most() {
        let mut queue = FairQueue::new();
        push(&mut queue, 0, 'e', &[10; 256]);
        next(&mut queue, 200);
        for key in 1..=8 {
            push(&mut queue, key, 'e', &[10; 256]);
        }
        for turn in 0..3 {
            push(&mut queue, 99, 'e', &[10]);
            let within: Vec<Vec<(u64, usize)>> = (0..4).map(|_| next(&mut queue, 200)).collect();
            assert!(
                within.iter().any(|b| b.contains(&(99, 0))),
                "turn {turn}: not within four batches"
            );
        }
    }

    #[test]
    fn new_requests_of_as_many_texts_take_their_first_turns_in_arrival_order() {
        let mut queue = FairQueue::new();
        for key in 1..=3 {
            push(&mut queue, key, 'e', &[10; 40]);
        }
        // 1's first turn, then (the rotation's turn) 1 again, then 2's first, then 1, then 3.
        let heads: Vec<u64> = (0..5).map(|_| next(&mut queue, 100)[0].0).collect();
        assert_eq!(heads, [1, 1, 2, 1, 3]);
    }

    #[test]
    fn a_batch_is_topped_up_with_the_texts_of_its_kind_nearest_in_length() {
        let mut queue = FairQueue::new();
        push(&mut queue, 1, 'e', &[20, 20]);
        push(&mut queue, 2, 'p', &[5, 5, 5]);
        push(&mut queue, 3, 'e', &[10, 10, 10]);
        push(&mut queue, 4, 'e', &[30, 30, 30]);
        // Request 1 (the fewest texts), then the texts just shorter, request 3's (request 2 is
        // another kind): 5 x 20; request 4's text of 30 would make 6 x 30 > 100.
        assert_eq!(
            next(&mut queue, 100),
            [(1, 0), (1, 1), (3, 0), (3, 1), (3, 2)]
        );
        // Request 2's turn: its kind alone.
        let batch = queue.next_batch(100).unwrap();
        assert_eq!(batch.kind, 'p');
        assert_eq!(batch.texts.len(), 3);
        assert_eq!(next(&mut queue, 100), [(4, 0), (4, 1), (4, 2)]);
        assert!(queue.is_empty());
        assert_eq!(waiting(&queue), 0);
    }

    #[test]
    fn requests_whose_client_has_gone_are_dropped_with_their_texts() {
        let mut queue = FairQueue::new();
        push(&mut queue, 1, 'e', &[10; 5]);
        push(&mut queue, 2, 'e', &[10; 3]);
        push(&mut queue, 3, 'e', &[]);
        let (keys, texts) = queue.drop_gone(|key| key == 1);
        assert_eq!((keys, texts), (vec![1], 5));
        assert_eq!(next(&mut queue, 1000), [(2, 0), (2, 1), (2, 2)]);
        assert!(queue.is_empty());
    }
}

//! The model thread's queue: which queued texts form the next batch.
//!
//! Requests take turns. Each batch starts with the texts of the request whose turn it is (its
//! longest remaining texts first, which keeps its batches' padding low), then tops the batch up
//! with the texts of the other requests, within the padded-token budget (texts × the batch's
//! longest). Whose turn it is: requests that have not had one yet get every other turn, the
//! one with the fewest texts first (ties, and a request passed over [`MAX_PASSED_OVER`] times,
//! first come, first served); the requests that have had one take the other turns in a
//! rotation. So a one-text request that arrives while eight 256-text requests are at work, or
//! wait to start, runs within two batches (first come, first served would run it after their
//! 2,048 texts), a big request keeps getting every other batch however many new requests
//! arrive, and a new big request waits for at most four smaller ones: none starves. Top-ups go
//! to the requests that have not had a turn first, in arrival order. A batch holds
//! one kind of work (embeddings or predictions), that of the request whose turn it is. Requests
//! whose client has gone are dropped, with their texts, whenever a batch is formed.

use std::collections::VecDeque;

/// One request's queued texts.
struct Waiting<K, T> {
    /// The request's key, chosen by the caller.
    key: u64,
    /// Its kind of work: a batch holds one.
    kind: K,
    /// Its texts not yet batched, longest first: (index in the request, tokens, text).
    texts: VecDeque<(usize, usize, T)>,
    /// Times a later, smaller request had its first turn before this one's.
    passed_over: u32,
}

/// A request that has not had a turn is passed over by smaller ones at most this many times.
pub(crate) const MAX_PASSED_OVER: u32 = 4;

/// The queued requests.
pub(crate) struct FairQueue<K, T> {
    /// Requests that have not had a turn yet, in arrival order.
    fresh: VecDeque<Waiting<K, T>>,
    /// Requests that have had a turn, in the order of their next turns.
    rotation: VecDeque<Waiting<K, T>>,
    /// Whether the next turn goes to `fresh` (when both have requests).
    fresh_next: bool,
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
            passed_over: 0,
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

    /// The position of the request in `fresh` whose first turn is next: the first passed over
    /// [`MAX_PASSED_OVER`] times, else the one with the fewest texts (the first of those).
    fn first_fresh(&self) -> usize {
        if let Some(starved) = self
            .fresh
            .iter()
            .position(|w| w.passed_over >= MAX_PASSED_OVER)
        {
            return starved;
        }
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
            let first = self.first_fresh();
            for earlier in self.fresh.iter_mut().take(first) {
                earlier.passed_over += 1;
            }
            self.fresh.remove(first)
        } else {
            self.rotation.pop_front()
        }?;
        self.fresh_next = !from_fresh;
        let kind = head.kind;
        let mut batch = Batch {
            kind,
            texts: Vec::new(),
        };
        let mut longest = 0;
        let full = fill(&mut batch.texts, &mut longest, &mut head, max_batch_tokens);
        if !full {
            for waiting in self.fresh.iter_mut().chain(self.rotation.iter_mut()) {
                if waiting.kind == kind
                    && fill(&mut batch.texts, &mut longest, waiting, max_batch_tokens)
                {
                    break;
                }
            }
        }
        // The request whose turn it was goes to the back of the rotation if it has texts left;
        // requests that have none left leave.
        if !head.texts.is_empty() {
            self.rotation.push_back(head);
        }
        self.fresh.retain(|w| !w.texts.is_empty());
        self.rotation.retain(|w| !w.texts.is_empty());
        Some(batch)
    }
}

/// Moves `waiting`'s texts, longest first, into `texts` while the batch stays within
/// `max_batch_tokens` padded tokens (`longest` is the batch's longest text; the first text of a
/// batch always goes in); `true` when the batch is full.
fn fill<K, T>(
    texts: &mut Vec<(u64, usize, T)>,
    longest: &mut usize,
    waiting: &mut Waiting<K, T>,
    max_batch_tokens: usize,
) -> bool {
    while let Some(&(_, tokens, _)) = waiting.texts.front() {
        let padded = (texts.len() + 1) * (*longest).max(tokens).max(1);
        if !texts.is_empty() && padded > max_batch_tokens {
            return true;
        }
        let (index, _, text) = waiting.texts.pop_front().expect("a text is there");
        *longest = (*longest).max(tokens);
        texts.push((waiting.key, index, text));
    }
    false
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
    fn a_short_request_runs_within_two_batches_even_when_big_ones_wait_to_start() {
        let mut queue = FairQueue::new();
        for key in 0..8 {
            push(&mut queue, key, 'e', &[10; 256]);
        }
        assert_eq!(next(&mut queue, 200)[0].0, 0);
        push(&mut queue, 99, 'e', &[10]);
        let first = next(&mut queue, 200);
        let second = next(&mut queue, 200);
        assert!(
            first.contains(&(99, 0)) || second.contains(&(99, 0)),
            "{first:?} {second:?}"
        );
    }

    #[test]
    fn a_big_new_request_is_passed_over_at_most_four_times() {
        let mut queue = FairQueue::new();
        push(&mut queue, 0, 'e', &[10; 100]);
        let mut first_turn = None;
        for turn in 0..20 {
            // A smaller new request arrives before every batch.
            push(&mut queue, 100 + turn, 'e', &[10; 5]);
            if next(&mut queue, 50)[0].0 == 0 {
                first_turn = Some(turn);
                break;
            }
        }
        // Every batch is a first turn here (nothing has had one before): four smaller requests,
        // then the big one.
        assert_eq!(first_turn, Some(4));
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
    fn a_batch_is_topped_up_by_other_requests_of_its_kind_in_arrival_order() {
        let mut queue = FairQueue::new();
        push(&mut queue, 1, 'e', &[20, 20]);
        push(&mut queue, 2, 'p', &[5, 5, 5]);
        push(&mut queue, 3, 'e', &[10, 10, 10]);
        push(&mut queue, 4, 'e', &[30, 30, 30]);
        // Request 1 (the fewest texts), then request 3's (request 2 is another kind): 5 x 20;
        // request 4's text of 30 would make 6 x 30 > 100.
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

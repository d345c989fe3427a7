//! The model thread's queue: which queued texts form the next batch.
//!
//! Fair by request, in turns: the requests wait in arrival order, and each batch starts with
//! the texts of the request whose turn it is (its longest remaining texts first, which keeps
//! its batches' padding low), then tops the batch up with the texts of the requests after it,
//! in arrival order, as long as the batch stays within the padded-token budget (texts × the
//! batch's longest). A request with texts left then goes to the back of the line. So a request
//! waits for at most one batch per request ahead of it, however large those are: a one-text
//! request that arrives behind eight 256-text requests runs within eight batches, not after
//! their 2,048 texts. A batch holds one kind of work (embeddings or predictions), that of the
//! request whose turn it is. Requests whose client has gone are dropped, with their texts,
//! whenever a batch is formed.

use std::collections::VecDeque;

/// One request's queued texts.
struct Waiting<K, T> {
    /// The request's key, chosen by the caller.
    key: u64,
    /// Its kind of work: a batch holds one kind.
    kind: K,
    /// Its texts not yet batched, longest first: (index in the request, tokens, text).
    texts: VecDeque<(usize, usize, T)>,
}

/// The queued requests, in the order of their turns.
pub(crate) struct FairQueue<K, T> {
    waiting: VecDeque<Waiting<K, T>>,
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
            waiting: VecDeque::new(),
        }
    }

    /// Whether no text waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Queues a request's texts (`tokens` gives each text's length) at the back of the line; a
    /// request without texts is not queued.
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
        self.waiting.push_back(Waiting {
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
        self.waiting.retain(|w| {
            let keep = !gone(w.key);
            if !keep {
                keys.push(w.key);
                texts += w.texts.len();
            }
            keep
        });
        (keys, texts)
    }

    /// The next batch of at most `max_batch_tokens` padded tokens (at least one text), or
    /// `None` when nothing waits.
    pub(crate) fn next_batch(&mut self, max_batch_tokens: usize) -> Option<Batch<K, T>> {
        let kind = self.waiting.front()?.kind;
        let mut texts = Vec::new();
        let mut longest = 0;
        'requests: for waiting in self.waiting.iter_mut().filter(|w| w.kind == kind) {
            while let Some(&(_, tokens, _)) = waiting.texts.front() {
                let padded = (texts.len() + 1) * longest.max(tokens).max(1);
                if !texts.is_empty() && padded > max_batch_tokens {
                    break 'requests;
                }
                let (index, _, text) = waiting.texts.pop_front().expect("a text is there");
                longest = longest.max(tokens);
                texts.push((waiting.key, index, text));
            }
        }
        // The request whose turn it was goes to the back if it has texts left; requests that
        // have none left leave the line.
        if let Some(first) = self.waiting.pop_front()
            && !first.texts.is_empty()
        {
            self.waiting.push_back(first);
        }
        self.waiting.retain(|w| !w.texts.is_empty());
        Some(Batch { kind, texts })
    }
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

    #[test]
    fn a_short_request_waits_one_batch_per_request_ahead_of_it() {
        let mut queue = FairQueue::new();
        for key in 0..8 {
            push(&mut queue, key, 'e', &[10; 256]);
        }
        push(&mut queue, 99, 'e', &[10]);
        let mut batches = 0;
        loop {
            batches += 1;
            let batch = next(&mut queue, 200);
            assert!(batch.len() <= 20);
            if batch.contains(&(99, 0)) {
                break;
            }
        }
        // Eight turns of the big requests, then its own: not after their 2,048 texts.
        assert_eq!(batches, 9);
        // The big requests took turns (20 texts each), and request 0 topped up the last batch.
        let left: usize = queue.waiting.iter().map(|w| w.texts.len()).sum();
        assert_eq!(left, 8 * 256 - 8 * 20 - 19);
    }

    #[test]
    fn a_batch_is_topped_up_by_the_next_requests_in_arrival_order() {
        let mut queue = FairQueue::new();
        push(&mut queue, 1, 'e', &[20, 20]);
        push(&mut queue, 2, 'p', &[5]);
        push(&mut queue, 3, 'e', &[10, 10]);
        push(&mut queue, 4, 'e', &[30]);
        // Request 1's two texts, then request 3's (request 2 is another kind); request 4's text
        // of 30 would make 5 x 30 > 100.
        assert_eq!(next(&mut queue, 100), [(1, 0), (1, 1), (3, 0), (3, 1)]);
        // Request 2's turn: its kind alone.
        let batch = queue.next_batch(100).unwrap();
        assert_eq!(batch.kind, 'p');
        assert_eq!(batch.texts.len(), 1);
        assert_eq!(next(&mut queue, 100), [(4, 0)]);
        assert!(queue.is_empty());
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

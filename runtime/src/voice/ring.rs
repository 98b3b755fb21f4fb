//! The buffer between a sound card's real-time callback and the capture loop.
//!
//! The callback must never wait (a late callback is an overrun at the driver), so it only
//! appends under a short lock; the capture loop waits on a condition variable. The buffer
//! is bounded: when the consumer falls behind by more than its capacity (e.g. 30 s spent in
//! something else), new samples are dropped and counted, and the ones already buffered —
//! the start of what the user said — are kept whole.
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What a wait on the ring produced.
#[derive(Debug, PartialEq)]
pub enum Popped {
    /// Samples, oldest first.
    Samples(Vec<f32>),
    /// The producer reported a failure (device lost).
    Failed(String),
    /// Nothing arrived within the timeout.
    Timeout,
}

#[derive(Default)]
struct State {
    buf: VecDeque<f32>,
    /// Samples refused since the consumer last looked.
    dropped: u64,
    /// The consumer has warned about the current run of drops.
    overflowing: bool,
    failure: Option<String>,
}

/// A bounded single-producer, single-consumer sample queue.
pub struct SampleRing {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
}

impl SampleRing {
    /// Holds at most `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data in a valid state: carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Producer: appends what fits, counts the rest as dropped. False if any was dropped.
    pub fn push(&self, samples: &[f32]) -> bool {
        let mut s = self.lock();
        let room = self.capacity - s.buf.len();
        let take = room.min(samples.len());
        s.buf.extend(&samples[..take]);
        s.dropped += (samples.len() - take) as u64;
        drop(s);
        self.ready.notify_one();
        take == samples.len()
    }

    /// Producer: the stream failed (device lost). The consumer sees it after the samples
    /// already buffered.
    pub fn fail(&self, why: String) {
        let mut s = self.lock();
        s.failure.get_or_insert(why);
        drop(s);
        self.ready.notify_one();
    }

    /// Consumer: waits up to `timeout` for samples, then takes up to `max` of them.
    pub fn pop(&self, max: usize, timeout: Duration) -> Popped {
        let s = self.lock();
        let (mut s, _) = self
            .ready
            .wait_timeout_while(s, timeout, |s| s.buf.is_empty() && s.failure.is_none())
            .unwrap_or_else(|p| p.into_inner());
        // One warning per run of drops, not one per wait.
        if s.dropped > 0 && !s.overflowing {
            tracing::warn!(
                "audio input: the buffer ({} samples) is full; new audio is dropped until \
                 the listener catches up",
                self.capacity
            );
        }
        s.overflowing = s.dropped > 0;
        s.dropped = 0;
        if !s.buf.is_empty() {
            let n = max.max(1).min(s.buf.len());
            return Popped::Samples(s.buf.drain(..n).collect());
        }
        match s.failure.take() {
            Some(why) => Popped::Failed(why),
            None => Popped::Timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn keeps_order_bounds_memory_and_reports_failure_after_data() {
        let ring = SampleRing::new(5);
        assert!(ring.push(&[1.0, 2.0, 3.0]));
        assert!(!ring.push(&[4.0, 5.0, 6.0, 7.0])); // 6 and 7 do not fit
        ring.fail("unplugged".into());
        let t = Duration::from_millis(1);
        assert_eq!(ring.pop(4, t), Popped::Samples(vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(ring.pop(4, t), Popped::Samples(vec![5.0]));
        assert_eq!(ring.pop(4, t), Popped::Failed("unplugged".into()));
        assert_eq!(ring.pop(4, t), Popped::Timeout);
    }

    #[test]
    fn consumer_wakes_when_the_producer_pushes() {
        let ring = Arc::new(SampleRing::new(1_000));
        let producer = {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                for i in 0..100 {
                    ring.push(&[i as f32]);
                }
            })
        };
        let mut got = Vec::new();
        while got.len() < 100 {
            match ring.pop(64, Duration::from_secs(10)) {
                Popped::Samples(s) => got.extend(s),
                other => panic!("{other:?}"),
            }
        }
        producer.join().unwrap();
        assert_eq!(got, (0..100).map(|i| i as f32).collect::<Vec<_>>());
    }
}

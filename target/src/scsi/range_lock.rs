//! Per logical unit LBA range lock.
//!
//! Every command that changes the medium (WRITE, WRITE AND VERIFY, WRITE
//! SAME, UNMAP, ORWRITE, WRITE ATOMIC, COMPARE AND WRITE, SANITIZE) holds
//! the range it changes for the whole of its read-modify-write, so that
//! COMPARE AND WRITE (VMware ATS), ORWRITE and WRITE ATOMIC are atomic
//! against every other write to those blocks (SBC-4 4.29, 5.3).
//!
//! The lock is an interval lock: a list of held `[start, end)` ranges
//! under a mutex, and a condition variable to wait on. Holders are few
//! (bounded by the command queue depth), so a linear scan is cheap.
//! Disjoint ranges never wait for each other; overlapping ones are served
//! first come, first served: a request also waits for earlier *waiting*
//! requests it overlaps, so a steady stream of writes cannot starve a
//! COMPARE AND WRITE (an ESXi heartbeat gives up after about 8 s).

use parking_lot::{Condvar, Mutex};

/// The held ranges of one logical unit.
#[derive(Debug, Default)]
pub struct RangeLock {
    inner: Mutex<Inner>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct Inner {
    /// (ticket, start, end) of every held range.
    held: Vec<(u64, u64, u64)>,
    /// (ticket, start, end) of every request still waiting.
    waiting: Vec<(u64, u64, u64)>,
    /// Tickets are handed out in arrival order.
    next_ticket: u64,
}

impl Inner {
    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Whether `[start, end)` must wait: it overlaps a held range, or an
    /// earlier request that is still waiting.
    fn busy(&self, ticket: u64, start: u64, end: u64) -> bool {
        let hit = |s: u64, e: u64| overlaps((s, e), (start, end));
        self.held.iter().any(|&(_, s, e)| hit(s, e))
            || self
                .waiting
                .iter()
                .any(|&(t, s, e)| t < ticket && hit(s, e))
    }

    fn unwait(&mut self, ticket: u64) {
        if let Some(i) = self.waiting.iter().position(|r| r.0 == ticket) {
            self.waiting.swap_remove(i);
        }
    }
}

/// A held range; released on drop.
#[derive(Debug)]
#[must_use = "the range is released when the guard is dropped"]
pub struct RangeGuard<'a> {
    lock: &'a RangeLock,
    id: u64,
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl RangeLock {
    /// An unlocked range lock.
    pub fn new() -> Self {
        RangeLock::default()
    }

    /// Waits until no held range overlaps `[lba, lba + blocks)` and holds
    /// it. A zero-length range still takes one block so that it orders
    /// against writers of that block; ranges that would pass the end of
    /// the address space are clamped.
    pub fn lock(&self, lba: u64, blocks: u64) -> RangeGuard<'_> {
        let start = lba;
        let end = lba.saturating_add(blocks.max(1));
        let mut inner = self.inner.lock();
        let id = inner.ticket();
        if inner.busy(id, start, end) {
            inner.waiting.push((id, start, end));
            while inner.busy(id, start, end) {
                self.freed.wait(&mut inner);
            }
            inner.unwait(id);
            // Later waiters blocked only by our waiting entry re-check.
            self.freed.notify_all();
        }
        inner.held.push((id, start, end));
        RangeGuard { lock: self, id }
    }

    /// Tries to hold `[lba, lba + blocks)` without waiting.
    pub fn try_lock(&self, lba: u64, blocks: u64) -> Option<RangeGuard<'_>> {
        let start = lba;
        let end = lba.saturating_add(blocks.max(1));
        let mut inner = self.inner.lock();
        let id = inner.ticket();
        if inner.busy(id, start, end) {
            return None;
        }
        inner.held.push((id, start, end));
        Some(RangeGuard { lock: self, id })
    }

    /// Number of ranges held right now (diagnostics and tests).
    pub fn held(&self) -> usize {
        self.inner.lock().held.len()
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let mut inner = self.lock.inner.lock();
        if let Some(i) = inner.held.iter().position(|&(id, _, _)| id == self.id) {
            inner.held.swap_remove(i);
        }
        drop(inner);
        self.lock.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn disjoint_ranges_do_not_block() {
        let l = RangeLock::new();
        let a = l.lock(0, 8);
        let b = l.try_lock(8, 8).expect("adjacent range is free");
        assert!(l.try_lock(7, 2).is_none());
        assert!(l.try_lock(15, 1).is_none());
        assert_eq!(l.held(), 2);
        drop(a);
        assert!(l.try_lock(0, 8).is_some());
        drop(b);
        assert_eq!(l.held(), 0);
    }

    #[test]
    fn zero_length_and_end_of_space() {
        let l = RangeLock::new();
        let g = l.lock(5, 0);
        assert!(l.try_lock(5, 1).is_none());
        assert!(l.try_lock(6, 1).is_some());
        drop(g);
        let g = l.lock(u64::MAX - 1, 10);
        assert!(l.try_lock(u64::MAX - 1, 1).is_none());
        drop(g);
    }

    #[test]
    fn overlapping_holders_serialise() {
        // Read-modify-write increments of one counter under the lock: no
        // update is lost.
        let l = Arc::new(RangeLock::new());
        let v = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let l = l.clone();
                let v = v.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _g = l.lock(i % 3, 4);
                        let x = v.load(Ordering::SeqCst);
                        std::thread::yield_now();
                        v.store(x + 1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(v.load(Ordering::SeqCst), 1600);
    }

    #[test]
    fn waiters_are_served_in_arrival_order() {
        // A waiter for [10, 11) must not be overtaken by a later request
        // for [10, 20) while [0, 15) is held... and a later disjoint
        // request still goes straight through.
        let l = Arc::new(RangeLock::new());
        let g = l.lock(0, 15);
        let l2 = l.clone();
        let first = std::thread::spawn(move || {
            let _g = l2.lock(10, 1);
            std::thread::sleep(Duration::from_millis(30));
        });
        while l.inner.lock().waiting.is_empty() {
            std::thread::yield_now();
        }
        drop(g);
        // The earlier waiter is ahead: an overlapping newcomer must wait,
        // even at a moment when nothing overlapping may be held.
        let t0 = std::time::Instant::now();
        let later = l.lock(10, 10);
        first.join().unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(20));
        assert!(l.try_lock(40, 5).is_some());
        drop(later);
        assert_eq!(l.held(), 0);
        assert!(l.inner.lock().waiting.is_empty());
    }

    #[test]
    fn waiter_wakes_on_release() {
        let l = Arc::new(RangeLock::new());
        let g = l.lock(10, 10);
        let l2 = l.clone();
        let t = std::thread::spawn(move || {
            let _g = l2.lock(15, 1);
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished());
        drop(g);
        t.join().unwrap();
        assert_eq!(l.held(), 0);
    }
}

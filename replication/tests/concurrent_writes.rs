//! Copies and initiator writes racing: a mirror's initial sync while the
//! source is written from two threads (synchronous and asynchronous mode),
//! and a clone's background copy while the clone itself is written. The
//! result must be exactly what the writes say.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ironlun_cow::{BlockDevice, Durability};
use ironlun_replication::model::{CopyState, Mode, SyncType};
use ironlun_replication::{ElementRef, ElementReplicaRequest};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `count` 4 KiB writes at random 4 KiB-aligned offsets of `d`, each filled
/// with a value derived from the seed and the write's index; the model (if
/// any) gets the same bytes.
fn scribble(d: &dyn BlockDevice, seed: u64, count: usize, mut model: Option<&mut Vec<u8>>) {
    let mut rng = Rng(seed);
    let slots = d.geometry().blocks / 8;
    for i in 0..count {
        let slot = rng.next() % slots;
        let buf = vec![(seed as u8).wrapping_add(i as u8) | 1; 4096];
        d.write(slot * 8, &buf, Durability::Cached).unwrap();
        if let Some(m) = model.as_deref_mut() {
            let at = (slot * 4096) as usize;
            m[at..at + 4096].copy_from_slice(&buf);
        }
        if i % 32 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn mirror_under_writes(mode: Mode) {
    let env = Env::new();
    let src = env.volume("src", 8 * MIB);
    env.fill(&src, 1);
    env.svc.set_copy_delay(Duration::from_millis(10));
    let mut req = ElementReplicaRequest::new(SyncType::Mirror, src.clone());
    req.element_name = Some("m".into());
    req.mode = Some(mode);
    let id = env
        .svc
        .create_element_replica(req)
        .unwrap()
        .synchronization
        .unwrap();
    let writers: Vec<_> = (0..2u64)
        .map(|t| {
            let d = env.dev(&src);
            std::thread::spawn(move || scribble(d.as_ref(), 0x9e37_79b9 + t, 400, None))
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    env.svc.set_copy_delay(Duration::ZERO);
    env.svc
        .wait_for_copy_state(id, CopyState::Synchronized, Duration::from_secs(20))
        .unwrap();
    env.svc.mirror_link(id).unwrap().drain().unwrap();
    assert_eq!(
        read_all(env.pool.device("m").unwrap().as_ref()),
        env.read_all(&src)
    );
}

#[test]
fn synchronous_mirror_initial_sync_under_concurrent_writes() {
    mirror_under_writes(Mode::Synchronous);
}

#[test]
fn asynchronous_mirror_initial_sync_under_concurrent_writes() {
    mirror_under_writes(Mode::Asynchronous);
}

#[test]
fn clone_copy_under_writes_to_both_sides() {
    let env = Env::new();
    let src = env.volume("src", 8 * MIB);
    env.fill(&src, 1);
    let mut model = env.read_all(&src);
    env.svc.set_copy_delay(Duration::from_millis(10));
    let mut req = ElementReplicaRequest::new(SyncType::Clone, src.clone());
    req.element_name = Some("c".into());
    let id = env
        .svc
        .create_element_replica(req)
        .unwrap()
        .synchronization
        .unwrap();
    let tgt = ElementRef::new("p", "c");
    let source_writer = {
        let d = env.dev(&src);
        std::thread::spawn(move || scribble(d.as_ref(), 77, 300, None))
    };
    let target: Arc<dyn BlockDevice> = env.dev(&tgt);
    scribble(target.as_ref(), 99, 300, Some(&mut model));
    source_writer.join().unwrap();
    env.svc.set_copy_delay(Duration::ZERO);
    env.svc
        .wait_for_copy_state(id, CopyState::Synchronized, Duration::from_secs(20))
        .unwrap();
    assert_eq!(env.read_all(&tgt), model);
    assert!(env.pool.check().is_clean());
}

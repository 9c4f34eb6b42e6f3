//! Data through the engine: snapshots keep their point in time, Restore
//! brings it back, clones are usable at once and independent after Detach,
//! resync moves only what changed, jobs survive a restart.

mod common;

use std::time::Duration;

use common::*;
use ironlun_replication::model::{CopyState, JobState, Operation, ReturnCode, SyncType};
use ironlun_replication::{ElementRef, ElementReplicaRequest};

fn request(t: SyncType, src: &ElementRef, name: &str) -> ElementReplicaRequest {
    let mut r = ElementReplicaRequest::new(t, src.clone());
    r.element_name = Some(name.into());
    r
}

#[test]
fn snapshot_keeps_its_point_in_time_and_restore_brings_it_back() {
    let env = Env::new();
    let src = env.volume("src", 4 * MIB);
    env.fill(&src, 1);
    let before = env.read_all(&src);
    let reply = env
        .svc
        .create_element_replica(request(SyncType::Snapshot, &src, "snap"))
        .unwrap();
    assert_eq!(reply.code(), ReturnCode::Completed);
    let id = reply.synchronization.unwrap();
    let s = env.svc.synchronization(id).unwrap();
    assert_eq!(s.copy_state, CopyState::Synchronized);
    assert!(s.when_activated.is_some());
    let snap = ElementRef::new("p", "snap");
    assert!(env.dev(&snap).read_only());

    // Overwrite 5 of 64 extents of the source.
    let d = env.dev(&src);
    for x in [0, 3, 17, 40, 63] {
        write_extent(d.as_ref(), x, 9);
    }
    assert_ne!(env.read_all(&src), before);
    assert_eq!(env.read_all(&snap), before, "the snapshot moved");

    let copied_before = env.svc.bytes_copied();
    let r = env
        .svc
        .modify_replica_synchronization(
            id,
            Operation::RestoreFromReplica,
            wait(CopyState::Synchronized),
        )
        .unwrap();
    assert_eq!(r.code(), ReturnCode::Completed);
    assert_eq!(
        env.read_all(&src),
        before,
        "restore did not bring the point in time back"
    );
    // Only the changed extents were copied back.
    assert_eq!(env.svc.bytes_copied() - copied_before, 5 * EXTENT);

    // Resync re-takes the point in time.
    write_extent(d.as_ref(), 7, 5);
    let now = env.read_all(&src);
    let r = env
        .svc
        .modify_replica_synchronization(id, Operation::ResyncReplica, None)
        .unwrap();
    assert_eq!(r.code(), ReturnCode::Completed);
    assert_eq!(
        read_all(env.pool.snapshot_device("snap").unwrap().as_ref()),
        now
    );

    // Return To ResourcePool deletes the snapshot.
    let r = env
        .svc
        .modify_replica_synchronization(id, Operation::ReturnToResourcePool, None)
        .unwrap();
    assert_eq!(r.code(), ReturnCode::Completed);
    assert!(env.pool.snapshot("snap").is_err());
    assert!(env.svc.synchronization(id).is_none());
    assert!(env.pool.check().is_clean());
}

#[test]
fn clone_is_usable_at_once_and_independent_after_detach() {
    let env = Env::new();
    let src = env.volume("src", 8 * MIB);
    env.fill(&src, 1);
    let pit = env.read_all(&src);
    env.svc.set_copy_delay(Duration::from_millis(5));
    let reply = env
        .svc
        .create_element_replica(request(SyncType::Clone, &src, "clone"))
        .unwrap();
    assert_eq!(reply.code(), ReturnCode::JobStarted);
    let id = reply.synchronization.unwrap();
    let job = reply.jobs[0];
    let tgt = ElementRef::new("p", "clone");
    // Usable at once: reads the point in time while the copy runs.
    assert_eq!(
        env.svc.synchronization(id).unwrap().copy_state,
        CopyState::Unsynchronized
    );
    assert_eq!(env.read_all(&tgt), pit);
    // Writes on both sides during the copy stay where they were made.
    write_extent(env.dev(&src).as_ref(), 100, 7);
    write_extent(env.dev(&tgt).as_ref(), 101, 8);
    env.svc.set_copy_delay(Duration::ZERO);
    env.svc
        .wait_for_copy_state(id, CopyState::Synchronized, Duration::from_secs(20))
        .unwrap();
    let j = env.svc.job(job).unwrap();
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(j.percent_complete, 100);
    assert_eq!(env.svc.synchronization(id).unwrap().percent_synced, 100);
    let mut expect = pit.clone();
    let mut e101 = vec![8u8; EXTENT as usize];
    e101[..8].copy_from_slice(&101u64.to_le_bytes());
    expect[(101 * EXTENT) as usize..(102 * EXTENT) as usize].copy_from_slice(&e101);
    assert_eq!(env.read_all(&tgt), expect);

    let r = env
        .svc
        .modify_replica_synchronization(id, Operation::Detach, None)
        .unwrap();
    assert_eq!(r.code(), ReturnCode::Completed);
    assert!(env.svc.synchronization(id).is_none());
    // Independent: writes to one never show in the other.
    env.fill(&src, 3);
    assert_eq!(env.read_all(&tgt), expect);
    env.fill(&tgt, 4);
    assert_ne!(env.read_all(&src), env.read_all(&tgt));
    // The clone owns every extent it holds data in.
    let owned = env.pool.volume("clone").unwrap().changed_since(0).unwrap();
    assert_eq!(owned.len(), 128);
    assert!(env.pool.check().is_clean());
}

#[test]
fn clone_into_another_pool_is_a_full_copy() {
    let env = Env::new();
    let other =
        ironlun_cow::Pool::create(env.dir.path().join("other.img"), 64 * MIB, EXTENT as u32)
            .unwrap();
    let svc = ironlun_replication::ReplicationService::open(
        [
            ("p".to_string(), env.pool.clone()),
            ("q".to_string(), other.clone()),
        ],
        env.dir.path().join("two.json"),
    )
    .unwrap();
    let src = env.volume("src", 2 * MIB);
    env.fill(&src, 6);
    let mut req = request(SyncType::Clone, &src, "far");
    req.target_pool = Some("q".into());
    req.wait_for = wait(CopyState::Synchronized);
    let r = svc.create_element_replica(req).unwrap();
    assert_eq!(r.code(), ReturnCode::Completed);
    assert_eq!(read_all(&other.volume("far").unwrap()), env.read_all(&src));
    assert!(other.check().is_clean());
}

#[test]
fn clone_resync_moves_only_what_changed_on_either_side() {
    let env = Env::new();
    let src = env.volume("src", 16 * MIB);
    env.fill(&src, 1);
    let mut req = request(SyncType::Clone, &src, "c");
    req.wait_for = wait(CopyState::Synchronized);
    let id = env
        .svc
        .create_element_replica(req)
        .unwrap()
        .synchronization
        .unwrap();
    let tgt = ElementRef::new("p", "c");
    let r = env
        .svc
        .modify_replica_synchronization(id, Operation::Fracture, None)
        .unwrap();
    assert_eq!(r.code(), ReturnCode::Completed);
    assert_eq!(
        env.svc.synchronization(id).unwrap().copy_state,
        CopyState::Fractured
    );
    // 10 extents dirty on the source, 8 on the target (2 overlap): 16 distinct.
    for x in 0..10 {
        write_extent(env.dev(&src).as_ref(), x * 20, 2);
    }
    for x in 0..6 {
        write_extent(env.dev(&tgt).as_ref(), x * 40 + 1, 3);
    }
    write_extent(env.dev(&tgt).as_ref(), 0, 3);
    write_extent(env.dev(&tgt).as_ref(), 20, 3);
    let dirty = 16 * EXTENT;
    let before = env.svc.bytes_copied();
    let r = env
        .svc
        .modify_replica_synchronization(id, Operation::ResyncReplica, wait(CopyState::Synchronized))
        .unwrap();
    assert_eq!(r.code(), ReturnCode::Completed);
    let moved = env.svc.bytes_copied() - before;
    assert!(
        moved >= dirty && moved * 100 <= dirty * 105,
        "moved {moved} for {dirty} dirty"
    );
    assert_eq!(env.read_all(&tgt), env.read_all(&src));
}

#[test]
fn suspend_resume_abort_and_resync_of_a_clone_copy() {
    let env = Env::new();
    let src = env.volume("src", 8 * MIB);
    env.fill(&src, 1);
    env.svc.set_copy_delay(Duration::from_millis(20));
    let r = env
        .svc
        .create_element_replica(request(SyncType::Clone, &src, "c"))
        .unwrap();
    let (id, job) = (r.synchronization.unwrap(), r.jobs[0]);
    let r = env
        .svc
        .modify_replica_synchronization(id, Operation::Suspend, None)
        .unwrap();
    assert_eq!(r.code(), ReturnCode::Completed);
    assert_eq!(env.svc.job(job).unwrap().state, JobState::Suspended);
    assert_eq!(
        env.svc.synchronization(id).unwrap().copy_state,
        CopyState::Suspended
    );
    // Detach is refused while the copy job owns the pair.
    let e = env
        .svc
        .modify_replica_synchronization(id, Operation::Detach, None)
        .unwrap_err();
    assert_eq!(e.code(), ReturnCode::InUse);
    env.svc
        .modify_replica_synchronization(id, Operation::Resume, None)
        .unwrap();
    assert_eq!(env.svc.job(job).unwrap().state, JobState::Running);
    env.svc
        .modify_replica_synchronization(id, Operation::Abort, None)
        .unwrap();
    assert_eq!(
        env.svc.synchronization(id).unwrap().copy_state,
        CopyState::Aborted
    );
    assert_eq!(env.svc.job(job).unwrap().state, JobState::Terminated);
    // The target still reads the point in time.
    assert_eq!(env.read_all(&ElementRef::new("p", "c")), env.read_all(&src));
    env.svc.set_copy_delay(Duration::ZERO);
    let r = env
        .svc
        .modify_replica_synchronization(id, Operation::ResyncReplica, wait(CopyState::Synchronized))
        .unwrap();
    assert_eq!(r.code(), ReturnCode::Completed);
    assert_eq!(env.read_all(&ElementRef::new("p", "c")), env.read_all(&src));
    // WaitForCopyState that cannot be met in time answers 3.
    let r = env
        .svc
        .modify_replica_synchronization(
            id,
            Operation::Fracture,
            Some(ironlun_replication::WaitFor {
                state: CopyState::Split,
                timeout: Duration::from_millis(50),
            }),
        )
        .unwrap();
    assert_eq!(r.code(), ReturnCode::Timeout);
}

#[test]
fn relationships_and_an_unfinished_copy_survive_a_restart() {
    let mut env = Env::new();
    let src = env.volume("src", 8 * MIB);
    env.fill(&src, 1);
    let pit = env.read_all(&src);
    env.svc.set_copy_delay(Duration::from_millis(20));
    let r = env
        .svc
        .create_element_replica(request(SyncType::Clone, &src, "c"))
        .unwrap();
    let (id, job) = (r.synchronization.unwrap(), r.jobs[0]);
    let snap_id = env
        .svc
        .create_element_replica(request(SyncType::Snapshot, &src, "s"))
        .unwrap()
        .synchronization
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    env.restart();
    let j = env.svc.job(job).unwrap();
    assert!(!j.state.is_final(), "{:?}", j.state);
    assert_eq!(
        env.svc.synchronization(snap_id).unwrap().copy_state,
        CopyState::Synchronized
    );
    env.svc
        .wait_for_copy_state(id, CopyState::Synchronized, Duration::from_secs(20))
        .unwrap();
    assert_eq!(env.read_all(&ElementRef::new("p", "c")), pit);
    assert_eq!(env.svc.job(job).unwrap().state, JobState::Completed);
    assert!(env.pool.check().is_clean());
}

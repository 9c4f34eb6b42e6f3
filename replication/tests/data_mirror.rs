//! Mirror (6) through the engine, with data: the target equals the source
//! (byte-compare) after sync, after async drain, after Fracture + writes on
//! both sides + Resync (moving no more than 1.05x the dirty data), after
//! Failover/Failback, Reverse Roles, Split, Restore, across pools and
//! across a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ironlun_cow::{BlockError, Durability};
use ironlun_replication::model::{CopyState, Mode, Operation, ReturnCode, SyncType};
use ironlun_replication::{ElementRef, ElementReplicaRequest};

fn mirror(env: &Env, src: &ElementRef, name: &str, mode: Mode) -> u64 {
    let mut r = ElementReplicaRequest::new(SyncType::Mirror, src.clone());
    r.element_name = Some(name.into());
    r.mode = Some(mode);
    r.wait_for = wait(CopyState::Synchronized);
    let reply = env.svc.create_element_replica(r).unwrap();
    assert_eq!(reply.code(), ReturnCode::Completed);
    reply.synchronization.unwrap()
}

fn raw(env: &Env, e: &ElementRef) -> Vec<u8> {
    read_all(env.pool.device(&e.name).unwrap().as_ref())
}

fn modify(env: &Env, id: u64, op: Operation) -> ReturnCode {
    env.svc
        .modify_replica_synchronization(id, op, wait_if_job(op))
        .unwrap()
        .code()
}

fn wait_if_job(op: Operation) -> Option<ironlun_replication::WaitFor> {
    match op {
        Operation::ResyncReplica
        | Operation::RestoreFromReplica
        | Operation::Failback
        | Operation::Resume => wait(CopyState::Synchronized),
        _ => None,
    }
}

fn drained(env: &Env, id: u64) {
    let link = env.svc.mirror_link(id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !link.dirty().is_empty() {
        assert!(Instant::now() < deadline, "async mirror did not drain");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn synchronous_and_asynchronous_mirrors_follow_the_source() {
    let env = Env::new();
    let src = env.volume("src", 4 * MIB);
    env.fill(&src, 1);
    let id = mirror(&env, &src, "m", Mode::Synchronous);
    let tgt = ElementRef::new("p", "m");
    assert_eq!(raw(&env, &tgt), env.read_all(&src));
    // Synchronous: equal as soon as the write returns.
    write_extent(env.dev(&src).as_ref(), 5, 7);
    assert_eq!(raw(&env, &tgt), env.read_all(&src));
    // The target refuses initiator writes while the mirror flows.
    let e = env
        .dev(&tgt)
        .write(0, &[0u8; 512], Durability::Cached)
        .unwrap_err();
    assert!(matches!(e, BlockError::ReadOnly));
    // Asynchronous: equal once drained.
    assert_eq!(
        modify(&env, id, Operation::ResetToAsync),
        ReturnCode::Completed
    );
    assert_eq!(
        env.svc.synchronization(id).unwrap().mode,
        Mode::Asynchronous
    );
    for x in 0..64 {
        write_extent(env.dev(&src).as_ref(), x, 8);
    }
    drained(&env, id);
    assert_eq!(raw(&env, &tgt), env.read_all(&src));
    assert_eq!(
        modify(&env, id, Operation::ResetToSync),
        ReturnCode::Completed
    );
    env.dev(&src).unmap(0, 256).unwrap();
    drained(&env, id);
    assert_eq!(raw(&env, &tgt), env.read_all(&src));
}

#[test]
fn fracture_writes_on_both_sides_then_resync_moves_only_the_dirty_extents() {
    let env = Env::new();
    let src = env.volume("src", 16 * MIB);
    env.fill(&src, 1);
    let id = mirror(&env, &src, "m", Mode::Asynchronous);
    let tgt = ElementRef::new("p", "m");
    drained(&env, id);
    assert_eq!(modify(&env, id, Operation::Fracture), ReturnCode::Completed);
    assert_eq!(
        env.svc.synchronization(id).unwrap().copy_state,
        CopyState::Fractured
    );
    for x in 0..12 {
        write_extent(env.dev(&src).as_ref(), x * 20, 2);
    }
    // The target is writable while fractured.
    for x in 0..8 {
        write_extent(env.dev(&tgt).as_ref(), x * 30 + 1, 3);
    }
    let dirty = 20 * EXTENT;
    let before = env.svc.bytes_copied();
    assert_eq!(
        modify(&env, id, Operation::ResyncReplica),
        ReturnCode::Completed
    );
    let moved = env.svc.bytes_copied() - before;
    assert!(
        moved >= dirty && moved * 100 <= dirty * 105,
        "moved {moved} for {dirty} dirty"
    );
    drained(&env, id);
    assert_eq!(raw(&env, &tgt), env.read_all(&src));
    assert!(env.pool.check().is_clean());
}

#[test]
fn split_restore_failover_failback_and_reverse_roles() {
    let env = Env::new();
    let src = env.volume("src", 4 * MIB);
    env.fill(&src, 1);
    let id = mirror(&env, &src, "m", Mode::Asynchronous);
    let tgt = ElementRef::new("p", "m");
    // Split drains first: the target equals the source at the split.
    for x in 0..32 {
        write_extent(env.dev(&src).as_ref(), x, 4);
    }
    assert_eq!(modify(&env, id, Operation::Split), ReturnCode::Completed);
    let at_split = env.read_all(&src);
    assert_eq!(raw(&env, &tgt), at_split);
    // Restore from Replica: the source reads as the target again.
    write_extent(env.dev(&src).as_ref(), 9, 5);
    assert_eq!(
        modify(&env, id, Operation::RestoreFromReplica),
        ReturnCode::Completed
    );
    assert_eq!(env.read_all(&src), at_split);
    assert_eq!(raw(&env, &tgt), at_split);
    // Failover: the target takes writes; Failback brings them home.
    assert_eq!(modify(&env, id, Operation::Failover), ReturnCode::Completed);
    assert_eq!(
        env.svc.synchronization(id).unwrap().copy_state,
        CopyState::Failedover
    );
    write_extent(env.dev(&tgt).as_ref(), 3, 6);
    assert_eq!(modify(&env, id, Operation::Failback), ReturnCode::Completed);
    drained(&env, id);
    assert_eq!(env.read_all(&src), raw(&env, &tgt));
    assert_eq!(
        env.svc.synchronization(id).unwrap().copy_state,
        CopyState::Synchronized
    );
    // Reverse Roles: the old target is the source now and its writes flow back.
    assert_eq!(
        modify(&env, id, Operation::ReverseRoles),
        ReturnCode::Completed
    );
    let s = env.svc.synchronization(id).unwrap();
    assert_eq!(
        (s.source.clone(), s.target.clone()),
        (tgt.clone(), src.clone())
    );
    write_extent(env.dev(&tgt).as_ref(), 10, 9);
    drained(&env, id);
    assert_eq!(raw(&env, &src), env.read_all(&tgt));
    assert!(env
        .dev(&src)
        .write(0, &[0u8; 512], Durability::Cached)
        .is_err());
    // Detach: two independent volumes.
    assert_eq!(modify(&env, id, Operation::Detach), ReturnCode::Completed);
    write_extent(env.dev(&src).as_ref(), 0, 1);
    assert_ne!(env.read_all(&src), env.read_all(&tgt));
    assert!(env.pool.check().is_clean());
}

#[test]
fn mirror_into_another_pool_survives_a_restart() {
    let mut env = Env::new();
    let other =
        ironlun_cow::Pool::create(env.dir.path().join("other.img"), 64 * MIB, EXTENT as u32)
            .unwrap();
    let open = |env: &Env| {
        ironlun_replication::ReplicationService::open(
            [
                ("p".to_string(), env.pool.clone()),
                ("q".to_string(), other.clone()),
            ],
            env.dir.path().join("two.json"),
        )
        .unwrap()
    };
    env.svc = open(&env);
    let src = env.volume("src", 2 * MIB);
    env.fill(&src, 3);
    let mut r = ElementReplicaRequest::new(SyncType::Mirror, src.clone());
    r.element_name = Some("far".into());
    r.target_pool = Some("q".into());
    r.wait_for = wait(CopyState::Synchronized);
    let id = env
        .svc
        .create_element_replica(r)
        .unwrap()
        .synchronization
        .unwrap();
    let far = || read_all(&other.volume("far").unwrap());
    assert_eq!(far(), env.read_all(&src));
    env.svc.shutdown();
    env.svc = open(&env);
    assert_eq!(
        env.svc.synchronization(id).unwrap().copy_state,
        CopyState::Synchronized
    );
    write_extent(env.dev(&src).as_ref(), 1, 9);
    assert_eq!(far(), env.read_all(&src));
    env.svc.shutdown();
}

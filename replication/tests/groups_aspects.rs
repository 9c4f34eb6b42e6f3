//! Groups (consistent points in time, one-to-many copies, group operations)
//! and synchronization aspects, with data.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ironlun_cow::{BlockDevice, Durability};
use ironlun_replication::aspect::AspectRequest;
use ironlun_replication::model::{
    AspectOperation, Consistency, CopyState, Operation, ReturnCode, SyncType,
};
use ironlun_replication::{ElementRef, GroupReplicaRequest};

fn group_request(name: &str, t: SyncType, sources: Vec<ElementRef>) -> GroupReplicaRequest {
    GroupReplicaRequest {
        relationship_name: name.into(),
        sync_type: t,
        mode: None,
        sources,
        target_element_count: None,
        target_pool: None,
        consistency: Consistency::Sequential,
        wait_for: None,
    }
}

/// Highest sequence number stamped in any block of `d` (0 if none).
fn max_seq(d: &dyn BlockDevice) -> u64 {
    let all = read_all(d);
    all.chunks(512)
        .map(|b| u64::from_le_bytes(b[..8].try_into().unwrap()))
        .max()
        .unwrap_or(0)
}

#[test]
fn sequential_consistency_never_shows_a_later_write_without_the_earlier_ones() {
    let env = Env::new();
    let a = env.volume("a", MIB);
    let b = env.volume("b", MIB);
    let (da, db) = (env.dev(&a), env.dev(&b));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Write k goes to a (even k) or b (odd k), one block, stamped k;
            // each write completes before the next starts.
            let mut k = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let mut block = [0u8; 512];
                block[..8].copy_from_slice(&k.to_le_bytes());
                let d = if k.is_multiple_of(2) { &da } else { &db };
                d.write((k / 2) % 2048, &block, Durability::Cached).unwrap();
                k += 1;
            }
            k
        })
    };
    for round in 0..8 {
        std::thread::sleep(Duration::from_millis(15));
        let r = env
            .svc
            .create_group_replica(group_request(
                &format!("g{round}"),
                SyncType::Snapshot,
                vec![a.clone(), b.clone()],
            ))
            .unwrap();
        assert_eq!(r.code(), ReturnCode::Completed);
        let sa = env.pool.snapshot_device(&format!("g{round}_1")).unwrap();
        let sb = env.pool.snapshot_device(&format!("g{round}_2")).unwrap();
        let (ma, mb) = (max_seq(sa.as_ref()), max_seq(sb.as_ref()));
        // The snapshots hold a prefix of the write sequence.
        assert!(ma.abs_diff(mb) <= 1, "round {round}: a at {ma}, b at {mb}");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 10);
}

#[test]
fn one_source_many_clones_and_group_operations() {
    let env = Env::new();
    let src = env.volume("src", 2 * MIB);
    env.fill(&src, 5);
    let mut req = group_request("copy", SyncType::Clone, vec![src.clone()]);
    req.target_element_count = Some(3);
    req.wait_for = wait(CopyState::Synchronized);
    let r = env.svc.create_group_replica(req).unwrap();
    assert_eq!(r.code(), ReturnCode::Completed);
    let gid = r.synchronization.unwrap();
    assert_eq!(r.targets.len(), 3);
    for i in 1..=3 {
        assert_eq!(
            env.read_all(&ElementRef::new("p", format!("copy_{i}"))),
            env.read_all(&src)
        );
    }
    assert_eq!(env.svc.group_copy_state(gid), Some(CopyState::Synchronized));
    let g = env.svc.group(gid).unwrap();
    // RemoveSyncPair then AddSyncPair.
    let first = g.members[0];
    env.svc
        .modify_group_synchronization(gid, Operation::RemoveSyncPair, &[first], None)
        .unwrap();
    assert_eq!(env.svc.group(gid).unwrap().members.len(), 2);
    env.svc
        .modify_group_synchronization(gid, Operation::AddSyncPair, &[first], None)
        .unwrap();
    assert_eq!(env.svc.group(gid).unwrap().members.len(), 3);
    env.svc
        .modify_group_synchronization(gid, Operation::DeactivateConsistency, &[], None)
        .unwrap();
    assert_eq!(
        env.svc.group(gid).unwrap().consistency,
        Consistency::NoConsistency
    );
    // Fracture all, change the source, resync all (one job each).
    env.svc
        .modify_group_synchronization(gid, Operation::Fracture, &[], None)
        .unwrap();
    assert_eq!(env.svc.group_copy_state(gid), Some(CopyState::Fractured));
    write_extent(env.dev(&src).as_ref(), 3, 9);
    let r = env
        .svc
        .modify_group_synchronization(
            gid,
            Operation::ResyncReplica,
            &[],
            wait(CopyState::Synchronized),
        )
        .unwrap();
    assert_eq!(r.jobs.len(), 3);
    for i in 1..=3 {
        assert_eq!(
            env.read_all(&ElementRef::new("p", format!("copy_{i}"))),
            env.read_all(&src)
        );
    }
    // An operation one member refuses changes none.
    let e = env
        .svc
        .modify_group_synchronization(gid, Operation::Resume, &[], None)
        .unwrap_err();
    assert_eq!(e.code(), ReturnCode::InvalidParameter);
    env.svc
        .modify_group_synchronization(gid, Operation::Detach, &[], None)
        .unwrap();
    assert!(env.svc.group(gid).is_none());
    assert!(env.svc.synchronizations().is_empty());
    assert!(env.pool.check().is_clean());
}

#[test]
fn aspect_copies_to_a_target_and_restores_the_source() {
    let env = Env::new();
    let src = env.volume("src", 2 * MIB);
    env.fill(&src, 1);
    let pit = env.read_all(&src);
    let r = env
        .svc
        .create_synchronization_aspect(AspectRequest {
            name: Some("pit".into()),
            sync_type: SyncType::Snapshot,
            sources: vec![src.clone()],
            consistency: Consistency::NoConsistency,
        })
        .unwrap();
    let aspect = r.settings_state.unwrap();
    env.fill(&src, 2);
    let r = env
        .svc
        .modify_settings_define_state(
            aspect,
            AspectOperation::CopyToTarget,
            &[ElementRef::new("p", "copy")],
        )
        .unwrap();
    assert_eq!(r.code(), ReturnCode::JobStarted);
    let sid = r.synchronization.unwrap();
    env.svc
        .wait_for_copy_state(sid, CopyState::Synchronized, Duration::from_secs(20))
        .unwrap();
    assert_eq!(env.read_all(&ElementRef::new("p", "copy")), pit);
    let r = env
        .svc
        .modify_settings_define_state(aspect, AspectOperation::Restore, &[])
        .unwrap();
    let job = r.jobs[0];
    for _ in 0..2000 {
        if env.svc.job(job).unwrap().state.is_final() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(env.read_all(&src), pit);
    env.svc
        .modify_replica_synchronization(sid, Operation::Detach, None)
        .unwrap();
    // Attach To Target: a new target presents the point in time at once
    // (no job), related to the source as a synchronized Clone.
    env.fill(&src, 3);
    let r = env
        .svc
        .modify_settings_define_state(aspect, AspectOperation::AttachToTarget, &[])
        .unwrap();
    assert_eq!(r.code(), ReturnCode::Completed);
    assert!(r.jobs.is_empty());
    let view = ElementRef::new("p", "pit_1");
    assert_eq!(r.targets, vec![view.clone()]);
    let attached = env.svc.synchronization(r.synchronization.unwrap()).unwrap();
    assert_eq!(
        (
            attached.sync_type,
            attached.copy_state,
            &attached.source,
            &attached.target
        ),
        (SyncType::Clone, CopyState::Synchronized, &src, &view)
    );
    assert_eq!(env.read_all(&view), pit);
    // Again onto the same (now existing) name: In Use.
    let e = env
        .svc
        .modify_settings_define_state(
            aspect,
            AspectOperation::AttachToTarget,
            std::slice::from_ref(&view),
        )
        .unwrap_err();
    assert_eq!(e.code(), ReturnCode::InUse);
    env.svc
        .modify_replica_synchronization(attached.id, Operation::Detach, None)
        .unwrap();
    env.pool.delete_volume("pit_1").unwrap();
    // The copy's origin is the aspect's snapshot: cow refuses to drop it.
    let e = env
        .svc
        .modify_settings_define_state(aspect, AspectOperation::Delete, &[])
        .unwrap_err();
    assert_eq!(e.code(), ReturnCode::InUse);
    env.pool.delete_volume("copy").unwrap();
    env.svc
        .modify_settings_define_state(aspect, AspectOperation::Delete, &[])
        .unwrap();
    assert!(env.svc.aspects().is_empty());
    assert!(env.pool.check().is_clean());
}

#[test]
fn a_group_of_mirrors_fractures_and_resyncs_together() {
    let env = Env::new();
    let a = env.volume("a", 2 * MIB);
    let b = env.volume("b", 2 * MIB);
    env.fill(&a, 1);
    env.fill(&b, 2);
    let mut req = group_request("mg", SyncType::Mirror, vec![a.clone(), b.clone()]);
    req.wait_for = wait(CopyState::Synchronized);
    let gid = env
        .svc
        .create_group_replica(req)
        .unwrap()
        .synchronization
        .unwrap();
    let (ta, tb) = (ElementRef::new("p", "mg_1"), ElementRef::new("p", "mg_2"));
    let raw = |e: &ElementRef| read_all(env.pool.device(&e.name).unwrap().as_ref());
    write_extent(env.dev(&a).as_ref(), 1, 7);
    assert_eq!(raw(&ta), env.read_all(&a));
    assert_eq!(raw(&tb), env.read_all(&b));
    env.svc
        .modify_group_synchronization(gid, Operation::Fracture, &[], None)
        .unwrap();
    assert_eq!(env.svc.group_copy_state(gid), Some(CopyState::Fractured));
    write_extent(env.dev(&a).as_ref(), 2, 8);
    write_extent(env.dev(&b).as_ref(), 3, 9);
    assert_ne!(raw(&ta), env.read_all(&a));
    env.svc
        .modify_group_synchronization(
            gid,
            Operation::ResyncReplica,
            &[],
            wait(CopyState::Synchronized),
        )
        .unwrap();
    assert_eq!(raw(&ta), env.read_all(&a));
    assert_eq!(raw(&tb), env.read_all(&b));
    env.svc
        .modify_group_synchronization(gid, Operation::Detach, &[], None)
        .unwrap();
    assert!(env.pool.check().is_clean());
}

#[test]
fn a_target_group_made_by_create_group_receives_the_clones() {
    let env = Env::new();
    let a = env.volume("a", 2 * MIB);
    let b = env.volume("b", 2 * MIB);
    env.fill(&a, 1);
    env.fill(&b, 2);
    let ta = env.volume("ta", 2 * MIB);
    let tb = env.volume("tb", 2 * MIB);
    let group = env
        .svc
        .create_element_group("targets", &[ta.clone(), tb.clone()])
        .unwrap();
    assert_eq!(
        env.svc.element_group(group).unwrap().members,
        vec![ta.clone(), tb.clone()]
    );
    // Counts must match: 5 naming TargetGroup.
    let one = env
        .svc
        .create_element_group("one", std::slice::from_ref(&ta))
        .unwrap();
    let e = env
        .svc
        .create_group_replica_onto(
            group_request("g", SyncType::Clone, vec![a.clone(), b.clone()]),
            Some(env.svc.element_group(one).unwrap().members),
        )
        .unwrap_err();
    assert_eq!(e.code(), ReturnCode::InvalidParameter);
    assert!(e.to_string().contains("TargetGroup"), "{e}");
    let r = env
        .svc
        .create_group_replica_onto(
            group_request("g", SyncType::Clone, vec![a.clone(), b.clone()]),
            Some(vec![ta.clone(), tb.clone()]),
        )
        .unwrap();
    let gid = r.synchronization.unwrap();
    for m in env.svc.group(gid).unwrap().members {
        env.svc
            .wait_for_copy_state(m, CopyState::Synchronized, Duration::from_secs(20))
            .unwrap();
    }
    let pairs: Vec<(ElementRef, ElementRef)> = env
        .svc
        .synchronizations()
        .into_iter()
        .map(|s| (s.source, s.target))
        .collect();
    assert_eq!(
        pairs,
        vec![(a.clone(), ta.clone()), (b.clone(), tb.clone())]
    );
    assert_eq!(env.read_all(&ta), env.read_all(&a));
    assert_eq!(env.read_all(&tb), env.read_all(&b));
    env.svc.delete_element_group(group).unwrap();
    assert_eq!(
        env.svc.delete_element_group(group).unwrap_err().code(),
        ReturnCode::InvalidParameter
    );
}

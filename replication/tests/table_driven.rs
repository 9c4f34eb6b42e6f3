//! Issue 5, done-when 1: every Operation in every CopyState the engine can
//! drive a relationship into, for each SyncType, through the real engine,
//! checked against the state table (return code and resulting CopyState).

mod common;

use std::time::Duration;

use common::*;
use ironlun_replication::model::{CimValue, CopyState, Operation, ReturnCode, SyncType};
use ironlun_replication::table::{decide, Decision, Effect, Next};
use ironlun_replication::{ElementReplicaRequest, WaitFor};

struct Driver {
    env: Env,
    n: u32,
}

impl Driver {
    /// A fresh relationship of type `t` in `state` (None: not drivable).
    fn make(&mut self, t: SyncType, state: CopyState) -> Option<u64> {
        use CopyState as S;
        self.n += 1;
        let svc = self.env.svc.clone();
        svc.set_copy_delay(Duration::ZERO);
        let src = self.env.volume(&format!("src{}", self.n), 2 * MIB);
        self.env.fill(&src, self.n as u8);
        let mut req = ElementReplicaRequest::new(t, src.clone());
        req.element_name = Some(format!("tgt{}", self.n));
        let modify = |id, op| {
            let r = svc.modify_replica_synchronization(id, op, None);
            assert!(r.is_ok(), "driving to {state:?} by {op:?}: {r:?}");
        };
        let id = match (t, state) {
            (SyncType::Snapshot, S::Initialized | S::Prepared) => {
                req.wait_for = Some(WaitFor {
                    state,
                    timeout: Duration::from_secs(1),
                });
                svc.create_element_replica(req)
                    .unwrap()
                    .synchronization
                    .unwrap()
            }
            (SyncType::Snapshot, S::Unsynchronized) => {
                let id = svc
                    .create_element_replica(req)
                    .unwrap()
                    .synchronization
                    .unwrap();
                self.env.fill(&src, 200);
                svc.set_copy_delay(Duration::from_millis(300));
                modify(id, Operation::RestoreFromReplica);
                id
            }
            (SyncType::Mirror, S::Unsynchronized | S::Aborted)
            | (SyncType::Clone, S::Unsynchronized | S::Suspended | S::Aborted) => {
                svc.set_copy_delay(Duration::from_millis(300));
                let id = svc
                    .create_element_replica(req)
                    .unwrap()
                    .synchronization
                    .unwrap();
                match state {
                    S::Suspended => modify(id, Operation::Suspend),
                    S::Aborted => modify(id, Operation::Abort),
                    _ => {}
                }
                id
            }
            (_, S::Broken) => return None,
            _ => {
                req.wait_for = wait(S::Synchronized);
                let id = svc
                    .create_element_replica(req)
                    .unwrap()
                    .synchronization
                    .unwrap();
                match state {
                    S::Synchronized => {}
                    S::Fractured => modify(id, Operation::Fracture),
                    S::Split => modify(id, Operation::Split),
                    S::Inactive => modify(id, Operation::Deactivate),
                    S::Suspended => modify(id, Operation::Suspend),
                    S::Failedover => modify(id, Operation::Failover),
                    S::Prepared => {
                        modify(id, Operation::Deactivate);
                        modify(id, Operation::Prepare);
                    }
                    S::Initialized => {
                        modify(id, Operation::Deactivate);
                        modify(id, Operation::Unprepare);
                    }
                    other => panic!("no driver for {t:?} {other:?}"),
                }
                id
            }
        };
        // Jobs started (or still running) stay observable during the check.
        let busy = ironlun_replication::table::JOB_STATES.contains(&state);
        svc.set_copy_delay(Duration::from_millis(if busy { 300 } else { 100 }));
        assert_eq!(
            svc.synchronization(id).unwrap().copy_state,
            state,
            "driving {t:?}"
        );
        Some(id)
    }
}

fn check(d: &mut Driver, t: SyncType, state: CopyState, op: Operation, id: u64) {
    let svc = d.env.svc.clone();
    let decision = decide(t, state, op);
    let got = svc.modify_replica_synchronization(id, op, None);
    let code = match &got {
        Ok(r) => r.code(),
        Err(e) => e.code(),
    };
    let after = svc.synchronization(id).map(|s| s.copy_state);
    let what = format!("{t:?} in {state:?}, {op:?}: {got:?}");
    match decision {
        Decision::Rejected(expected) => {
            assert_eq!(code, expected, "{what}");
            assert_eq!(
                after,
                Some(state),
                "{what}: a refused operation changed the state"
            );
        }
        Decision::Allowed(rule) if rule.effect == Effect::Group => {
            // Group operations on an element synchronization.
            assert_eq!(code, ReturnCode::InvalidParameter, "{what}");
            assert_eq!(after, Some(state), "{what}");
        }
        Decision::Allowed(rule) => {
            assert_eq!(code, rule.code(), "{what}");
            match rule.next {
                // Resume restarts a copy that may find nothing left to do.
                Next::To(s) if rule.effect == Effect::ResumeCopy => {
                    assert!(
                        after == Some(s) || after == Some(CopyState::Synchronized),
                        "{what}: {after:?}"
                    )
                }
                Next::To(s) => assert_eq!(after, Some(s), "{what}"),
                Next::Unchanged => assert_eq!(after, Some(state), "{what}"),
                Next::Removed => assert_eq!(after, None, "{what}"),
                Next::Job { during, done, .. } => {
                    assert!(
                        after == Some(during) || after == Some(done),
                        "{what}: {after:?}"
                    );
                    svc.set_copy_delay(Duration::ZERO);
                    svc.wait_for_copy_state(id, done, Duration::from_secs(20))
                        .unwrap();
                }
            }
        }
    }
}

fn run(t: SyncType) {
    let mut d = Driver {
        env: Env::new(),
        n: 0,
    };
    let mut checked = 0;
    for state in ironlun_replication::table::reachable(t) {
        // One relationship serves every refused operation (nothing changes);
        // each allowed one gets a fresh relationship.
        let Some(shared) = d.make(t, *state) else {
            eprintln!("{t:?}: {state:?} is not drivable from outside (skipped)");
            continue;
        };
        for op in Operation::ALL {
            let allowed =
                matches!(decide(t, *state, *op), Decision::Allowed(r) if r.effect != Effect::Group);
            // A copy job finishes on its own: those states get a fresh one each time.
            let busy = ironlun_replication::table::JOB_STATES.contains(state);
            let id = if allowed || busy {
                d.make(t, *state).unwrap()
            } else {
                shared
            };
            check(&mut d, t, *state, *op, id);
            checked += 1;
        }
    }
    assert!(checked >= 5 * Operation::ALL.len());
}

#[test]
fn snapshot_every_operation_in_every_reachable_state() {
    run(SyncType::Snapshot);
}

#[test]
fn clone_every_operation_in_every_reachable_state() {
    run(SyncType::Clone);
}

#[test]
fn mirror_every_operation_in_every_reachable_state() {
    run(SyncType::Mirror);
}

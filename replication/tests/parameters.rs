//! Bad input gets a definite code, never a panic; an existing TargetElement
//! is used as given.

mod common;

use std::time::Duration;

use common::*;
use ironlun_replication::model::{CopyState, JobRequest, Operation, ReturnCode, SyncType};
use ironlun_replication::{ElementRef, ElementReplicaRequest, WaitFor};

fn code<T: std::fmt::Debug>(r: Result<T, ironlun_replication::ReplicationError>) -> ReturnCode {
    r.expect_err("should fail").code()
}

#[test]
fn bad_parameters_answer_definite_codes() {
    let env = Env::new();
    let src = env.volume("src", MIB);
    let svc = &env.svc;
    let req = |t, s: &ElementRef, name: &str| {
        let mut r = ElementReplicaRequest::new(t, s.clone());
        r.element_name = Some(name.into());
        r
    };
    assert_eq!(
        code(svc.create_element_replica(req(SyncType::Clone, &ElementRef::new("p", "nope"), "x"))),
        ReturnCode::InvalidParameter
    );
    assert_eq!(
        code(svc.create_element_replica(req(
            SyncType::Clone,
            &ElementRef::new("nopool", "src"),
            "x"
        ))),
        ReturnCode::InvalidParameter
    );
    assert_eq!(
        code(svc.create_element_replica(req(SyncType::Snapshot, &src, ".repl-1-pit-1"))),
        ReturnCode::InvalidParameter
    );
    let mut both = req(SyncType::Clone, &src, "x");
    both.target = Some(ElementRef::new("p", "src"));
    both.target_pool = Some("p".into());
    assert_eq!(
        code(svc.create_element_replica(both)),
        ReturnCode::InvalidParameter
    );
    let mut long = req(SyncType::Snapshot, &src, "s0");
    long.wait_for = Some(WaitFor {
        state: CopyState::Synchronized,
        timeout: Duration::from_secs(3600),
    });
    assert_eq!(
        code(svc.create_element_replica(long)),
        ReturnCode::InvalidParameter
    );
    svc.create_element_replica(req(SyncType::Snapshot, &src, "s1"))
        .unwrap();
    assert_eq!(
        code(svc.create_element_replica(req(SyncType::Snapshot, &src, "s1"))),
        ReturnCode::InUse
    );
    env.volume("small", MIB / 2);
    let mut wrong = ElementReplicaRequest::new(SyncType::Clone, src.clone());
    wrong.target = Some(ElementRef::new("p", "small"));
    assert_eq!(
        code(svc.create_element_replica(wrong)),
        ReturnCode::InvalidParameter
    );
    assert_eq!(
        code(svc.modify_replica_synchronization(999, Operation::Detach, None)),
        ReturnCode::InvalidParameter
    );
    assert_eq!(
        code(svc.modify_group_synchronization(999, Operation::Detach, &[], None)),
        ReturnCode::InvalidParameter
    );
    assert_eq!(
        code(
            svc.request_job_state_change(ironlun_replication::job::JobId(999), JobRequest::Suspend)
        ),
        ReturnCode::InvalidParameter
    );
}

#[test]
fn clone_and_mirror_onto_an_existing_target() {
    let env = Env::new();
    let src = env.volume("src", 2 * MIB);
    env.fill(&src, 3);
    let existing = env.volume("existing", 2 * MIB);
    env.fill(&existing, 9);
    let mut req = ElementReplicaRequest::new(SyncType::Clone, src.clone());
    req.element_name = Some("a name for the relationship".into());
    req.target = Some(existing.clone());
    req.wait_for = wait(CopyState::Synchronized);
    let r = env.svc.create_element_replica(req).unwrap();
    assert_eq!(r.targets, vec![existing.clone()]);
    assert_eq!(env.read_all(&existing), env.read_all(&src));
    let id = r.synchronization.unwrap();
    let job = env.svc.jobs()[0].id;
    assert_eq!(
        code(env.svc.request_job_state_change(job, JobRequest::Suspend)),
        ReturnCode::InvalidParameter
    );
    env.svc
        .modify_replica_synchronization(id, Operation::Detach, None)
        .unwrap();

    let mut m = ElementReplicaRequest::new(SyncType::Mirror, src.clone());
    m.target = Some(existing.clone());
    m.wait_for = wait(CopyState::Synchronized);
    env.svc.create_element_replica(m).unwrap();
    write_extent(env.dev(&src).as_ref(), 4, 5);
    assert_eq!(
        read_all(env.pool.device("existing").unwrap().as_ref()),
        env.read_all(&src)
    );
    // One mirror per source.
    let mut again = ElementReplicaRequest::new(SyncType::Mirror, src.clone());
    again.element_name = Some("second".into());
    assert_eq!(
        code(env.svc.create_element_replica(again)),
        ReturnCode::InUse
    );
}

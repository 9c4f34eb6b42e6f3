//! The checked-in docs/REPLICATION.md is what the code generates, and the
//! table answers every (SyncType, CopyState, Operation) definitely.

use ironlun_replication::model::{CimValue, CopyState, Operation, ReturnCode, SyncType};
use ironlun_replication::table::{decide, reachable, Decision, Next, JOB_STATES};

#[test]
fn replication_doc_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/REPLICATION.md");
    let generated = ironlun_replication::table::render_markdown();
    if std::env::var_os("IRONLUN_REGEN_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/REPLICATION.md is stale: run `cargo run -p ironlun-replication --example gen_replication_doc` \
         (or set IRONLUN_REGEN_DOCS=1 for this test)"
    );
}

#[test]
fn every_combination_has_a_definite_answer() {
    for t in SyncType::ALL {
        for s in CopyState::ALL {
            for op in Operation::ALL {
                match decide(*t, *s, *op) {
                    Decision::Allowed(r) => {
                        assert!(reachable(*t).contains(s));
                        assert_eq!(
                            r.code(),
                            if matches!(r.next, Next::Job { .. }) {
                                ReturnCode::JobStarted
                            } else {
                                ReturnCode::Completed
                            }
                        );
                    }
                    Decision::Rejected(c) => {
                        assert!(
                            matches!(
                                c,
                                ReturnCode::NotSupported
                                    | ReturnCode::InvalidParameter
                                    | ReturnCode::InUse
                            ),
                            "{t:?} {s:?} {op:?} -> {c:?}"
                        );
                        if c == ReturnCode::InUse {
                            assert!(JOB_STATES.contains(s));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn spot_checks_against_model_md_section_7() {
    use CopyState as S;
    use Operation as O;
    use SyncType as T;
    let code = |t, s, o| decide(t, s, o).code();
    // Snapshot-only and mirror-only operations.
    assert_eq!(
        code(T::Snapshot, S::Synchronized, O::ReturnToResourcePool),
        ReturnCode::Completed
    );
    assert_eq!(
        code(T::Clone, S::Synchronized, O::ReturnToResourcePool),
        ReturnCode::NotSupported
    );
    assert_eq!(
        code(T::Snapshot, S::Synchronized, O::Failover),
        ReturnCode::NotSupported
    );
    assert_eq!(
        code(T::Mirror, S::Synchronized, O::Failover),
        ReturnCode::Completed
    );
    assert_eq!(
        code(T::Mirror, S::Failedover, O::Failback),
        ReturnCode::JobStarted
    );
    // Windows: clone then Detach once synchronized.
    assert_eq!(
        code(T::Clone, S::Synchronized, O::Detach),
        ReturnCode::Completed
    );
    assert_eq!(
        code(T::Clone, S::Unsynchronized, O::Detach),
        ReturnCode::InUse
    );
    assert_eq!(
        code(T::Snapshot, S::Synchronized, O::Detach),
        ReturnCode::NotSupported
    );
    // Snapshot resync re-takes the PIT at once; clone resync is a job.
    assert_eq!(
        code(T::Snapshot, S::Synchronized, O::ResyncReplica),
        ReturnCode::Completed
    );
    assert_eq!(
        code(T::Clone, S::Fractured, O::ResyncReplica),
        ReturnCode::JobStarted
    );
    assert_eq!(
        code(T::Clone, S::Unsynchronized, O::Abort),
        ReturnCode::Completed
    );
    assert_eq!(
        code(T::Snapshot, S::Synchronized, O::Abort),
        ReturnCode::NotSupported
    );
    assert_eq!(
        code(T::Snapshot, S::Inactive, O::ResyncReplica),
        ReturnCode::InvalidParameter
    );
    assert_eq!(
        code(T::Mirror, S::Synchronized, O::ResetToAdaptive),
        ReturnCode::NotSupported
    );
}

//! The real [`Provider`]: CIM classes and methods translated onto the
//! replication engine ([`ironlun_replication::ReplicationService`]).
//!
//! This module only translates: it reads engine records into instances
//! and typed CIM parameters into the engine's typed requests, and maps the
//! engine's replies and errors back to return codes. Every decision about
//! states, operations and data belongs to the engine.
//!
//! Naming (what the instance keys hold):
//!
//! | class | key | value |
//! |---|---|---|
//! | MSISCSITARGET_StorageVolume | DeviceID | `<pool>/<volume or snapshot>` |
//! | MSISCSITARGET_StoragePool | InstanceID | `IRONLUN:pool-<pool>` |
//! | MSISCSITARGET_ConcreteJob | InstanceID | `IRONLUN:job-<n>` (the engine's JobId) |
//! | CIM_SynchronizationAspect | InstanceID | `IRONLUN:aspect-<n>` |
//! | CIM_ReplicationGroup | InstanceID | `IRONLUN:group-<n>-source` / `-target` (the two sides of group synchronization n) |
//!
//! A StorageSynchronized is named by its SystemElement / SyncedElement
//! volumes. References may carry only some keys (e.g. only DeviceID): an
//! instance matches when every key the reference carries matches.

use std::sync::Arc;
use std::time::Duration;

use ironlun_replication::aspect::AspectRequest;
use ironlun_replication::job::{Job, JobId};
use ironlun_replication::model::{
    AspectOperation, CimValue as EngineCim, Consistency, CopyState, JobRequest, JobState, Mode,
    Operation, ProgressStatus, SyncType,
};
use ironlun_replication::{
    table, ElementRef, ElementReplicaRequest, GroupReplicaRequest, ReplicationError,
    ReplicationService, Reply, Synchronization, WaitFor,
};

use crate::error::CimError;
use crate::provider::{path_of, MethodOutcome, Params, Provider};
use crate::schema::{self, ClassDecl, MethodDecl, Ns};
use crate::value::{CimValue, Instance, KeyValue, ObjectPath};

const VOLUME: &str = "MSISCSITARGET_StorageVolume";
const POOL: &str = "MSISCSITARGET_StoragePool";
const SERVICE: &str = "MSISCSITARGET_ReplicationService";
const CAPS: &str = "MSISCSITARGET_ReplicationServiceCapabilities";
const SYNC: &str = "MSISCSITARGET_StorageSynchronized";
const JOB: &str = "MSISCSITARGET_ConcreteJob";
const AFFECTED: &str = "MSISCSITARGET_AffectedJobElement";
const ASPECT: &str = "CIM_SynchronizationAspect";
const SDS: &str = "CIM_SettingsDefineState";
const GROUP: &str = "CIM_ReplicationGroup";
const GROUP_SYNC: &str = "CIM_GroupSynchronized";
const MEMBER: &str = "CIM_OrderedMemberOfCollection";
const ALLOCATED: &str = "MSISCSITARGET_AllocatedFromStoragePool";
const ELEMENT_CAPS: &str = "MSISCSITARGET_ElementCapabilities";
const PROFILE: &str = "CIM_RegisteredProfile";
const CONFORMS: &str = "CIM_ElementConformsToProfile";

const JOB_PREFIX: &str = "IRONLUN:job-";
const ASPECT_PREFIX: &str = "IRONLUN:aspect-";
const POOL_PREFIX: &str = "IRONLUN:pool-";
const GROUP_PREFIX: &str = "IRONLUN:group-";
/// The InstanceID suffix of a group made by CreateGroup.
const ELEMENTS_SIDE: &str = "elements";
const CAPS_ID: &str = "IRONLUN:ReplicationServiceCapabilities";
const SERVICE_NAME: &str = "ReplicationService";

/// ReplicationType (capabilities) <-> SyncType + Mode, local replication:
/// the CIM_ReplicationServiceCapabilities ValueMap.
const REPLICATION_TYPES: &[(u16, SyncType, Mode)] = &[
    (2, SyncType::Mirror, Mode::Synchronous),
    (3, SyncType::Mirror, Mode::Asynchronous),
    (6, SyncType::Snapshot, Mode::Synchronous),
    (7, SyncType::Snapshot, Mode::Asynchronous),
    (10, SyncType::Clone, Mode::Synchronous),
    (11, SyncType::Clone, Mode::Asynchronous),
];

/// SupportedSynchronous/AsynchronousActions values of the methods served:
/// 2 CreateElementReplica, 3 CreateGroupReplica, 4 CreateSynchronizationAspect,
/// 5 ModifyReplicaSynchronization, 7 ModifySettingsDefineState.
const ACTIONS: &[u16] = &[2, 3, 4, 5, 7];
/// Methods that never start a job: 12 CreateGroup, 13 DeleteGroup.
const SYNCHRONOUS_ONLY_ACTIONS: &[u16] = &[12, 13];

/// The [`Provider`] over a [`ReplicationService`].
pub struct EngineProvider {
    svc: Arc<ReplicationService>,
    pools: Vec<String>,
    system_name: String,
    wait_timeout: Duration,
}

/// Why a method returns a code instead of running (logged with the code).
struct Refusal {
    code: u32,
    why: String,
}

type MResult<T> = Result<T, Refusal>;

fn invalid(why: impl Into<String>) -> Refusal {
    Refusal {
        code: 5,
        why: why.into(),
    }
}
fn unsupported(why: impl Into<String>) -> Refusal {
    Refusal {
        code: 1,
        why: why.into(),
    }
}
impl From<ReplicationError> for Refusal {
    fn from(e: ReplicationError) -> Refusal {
        Refusal {
            code: e.code().cim(),
            why: e.to_string(),
        }
    }
}

fn s(v: impl Into<String>) -> CimValue {
    CimValue::String(v.into())
}
fn u16v(v: u32) -> CimValue {
    CimValue::Uint16(u16::try_from(v).unwrap_or(u16::MAX))
}
fn u16a(v: impl IntoIterator<Item = u32>) -> CimValue {
    CimValue::Array(v.into_iter().map(u16v).collect())
}
fn decl(name: &str) -> &'static ClassDecl {
    let ns = if name == PROFILE || name == CONFORMS {
        Ns::Interop
    } else {
        Ns::Implementation
    };
    // Every name used here is declared (checked by a unit test).
    schema::class(ns, name).unwrap_or(&schema::CLASSES[0])
}
fn path(class: &str, inst: &Instance) -> ObjectPath {
    path_of(decl(class), inst)
}
fn reference(class: &str, inst: &Instance) -> CimValue {
    CimValue::Reference(path(class, inst))
}

/// Unix milliseconds as a DSP0004 timestamp (UTC).
pub fn cim_timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let micros = (ms % 1000) * 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}.{micros:06}+000",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A duration as a DSP0004 interval.
pub fn cim_interval(d: Duration) -> String {
    let secs = d.as_secs();
    format!(
        "{:08}{:02}{:02}{:02}.{:06}:000",
        (secs / 86_400).min(99_999_999),
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        d.subsec_micros()
    )
}

fn ts(v: Option<u64>) -> CimValue {
    v.map(|ms| CimValue::DateTime(cim_timestamp(ms)))
        .unwrap_or(CimValue::Null)
}

/// True when every key `reference` carries matches `inst` (class names
/// are not compared: a client may name a superclass).
fn keys_match(reference: &ObjectPath, inst: &Instance) -> bool {
    !reference.keys.is_empty()
        && reference.keys.iter().all(|(k, v)| match (v, inst.get(k)) {
            (KeyValue::Reference(r), Some(CimValue::Reference(p))) => ref_matches(r, p),
            (KeyValue::Boolean(b), Some(CimValue::Boolean(x))) => b == x,
            (kv, Some(val)) => match (kv.as_str(), val.scalar_text()) {
                (Some(a), Some(b)) => {
                    a == b
                        || a.trim()
                            .parse::<i128>()
                            .ok()
                            .is_some_and(|n| b.parse::<i128>().ok() == Some(n))
                }
                _ => false,
            },
            _ => false,
        })
}

/// True when every key of `partial` is in `full` with the same value.
fn ref_matches(partial: &ObjectPath, full: &ObjectPath) -> bool {
    !partial.keys.is_empty()
        && partial
            .keys
            .iter()
            .all(|(k, v)| match (v, full.get_key(k)) {
                (KeyValue::Reference(a), Some(KeyValue::Reference(b))) => ref_matches(a, b),
                (a, Some(b)) => a.as_str().is_some() && a.as_str() == b.as_str(),
                _ => false,
            })
}

/// The id in `IRONLUN:<kind>-<n>`.
fn parse_id(text: &str, prefix: &str) -> Option<u64> {
    let p = text.get(..prefix.len())?;
    if !p.eq_ignore_ascii_case(prefix) {
        return None;
    }
    text[prefix.len()..].parse().ok()
}

impl EngineProvider {
    /// A provider over `svc`, whose pools are `pools` (the names given to
    /// [`ReplicationService::open`]); `system_name` is the SystemName key.
    pub fn new(
        svc: Arc<ReplicationService>,
        pools: impl IntoIterator<Item = String>,
        system_name: impl Into<String>,
    ) -> EngineProvider {
        EngineProvider {
            svc,
            pools: pools.into_iter().collect(),
            system_name: system_name.into(),
            wait_timeout: Duration::from_secs(45),
        }
    }

    /// The longest a WaitForCopyState makes a call wait (keep it below the
    /// server's request time limit); afterwards the method answers 3.
    pub fn with_wait_timeout(mut self, t: Duration) -> EngineProvider {
        self.wait_timeout = t;
        self
    }

    // ---- instances --------------------------------------------------------

    fn volume_instance(&self, e: &ElementRef, size: u64, parent: Option<String>) -> Instance {
        let bs = self
            .svc
            .pool(&e.pool)
            .map(|p| u64::from(p.info().block_size))
            .unwrap_or(512)
            .max(1);
        let blocks = size / bs;
        let mut inst = Instance::new(VOLUME)
            .with("SystemCreationClassName", s("CIM_ComputerSystem"))
            .with("SystemName", s(&self.system_name))
            .with("CreationClassName", s(VOLUME))
            .with("DeviceID", s(e.to_string()))
            .with("ElementName", s(&e.name))
            .with("Name", s(e.to_string()))
            .with("NameFormat", CimValue::Uint16(1))
            .with("BlockSize", CimValue::Uint64(bs))
            .with("NumberOfBlocks", CimValue::Uint64(blocks))
            .with("ConsumableBlocks", CimValue::Uint64(blocks))
            .with("OperationalStatus", u16a([2]))
            .with("HealthState", CimValue::Uint16(5))
            .with("EnabledState", CimValue::Uint16(2))
            .with("Primordial", CimValue::Boolean(false))
            .with(
                "MSType",
                CimValue::Sint32(if parent.is_some() { 4 } else { 3 }),
            );
        if let Some(p) = parent {
            inst.set("MSParentPath", s(format!("{}/{}", e.pool, p)));
        }
        inst
    }

    /// Every visible volume and snapshot (hidden engine snapshots, whose
    /// names start with '.', are not listed).
    fn volumes(&self) -> Vec<Instance> {
        let mut out = Vec::new();
        for name in &self.pools {
            let Ok(pool) = self.svc.pool(name) else {
                continue;
            };
            for v in pool.volumes() {
                if v.name.starts_with('.') {
                    continue;
                }
                let origin = v.origin.filter(|o| !o.starts_with('.'));
                out.push(self.volume_instance(&ElementRef::new(name, &v.name), v.size, origin));
            }
            for sn in pool.snapshots() {
                if sn.name.starts_with('.') {
                    continue;
                }
                out.push(self.volume_instance(
                    &ElementRef::new(name, &sn.name),
                    sn.size,
                    Some(sn.volume),
                ));
            }
        }
        out
    }

    /// A path to volume `e` (whether or not it still exists).
    fn volume_path(&self, e: &ElementRef) -> ObjectPath {
        path(VOLUME, &self.volume_instance(e, 0, None))
    }

    fn pool_instance(&self, name: &str) -> Option<Instance> {
        let info = self.svc.pool(name).ok()?.info();
        let ext = u64::from(info.extent_size);
        Some(
            Instance::new(POOL)
                .with("InstanceID", s(format!("{POOL_PREFIX}{name}")))
                .with("PoolID", s(name))
                .with("ElementName", s(name))
                .with("Primordial", CimValue::Boolean(false))
                .with("TotalManagedSpace", CimValue::Uint64(info.extents * ext))
                .with(
                    "RemainingManagedSpace",
                    CimValue::Uint64(info.free_extents * ext),
                )
                .with("OperationalStatus", u16a([2])),
        )
    }

    fn service(&self) -> Instance {
        Instance::new(SERVICE)
            .with("SystemCreationClassName", s("CIM_ComputerSystem"))
            .with("SystemName", s(&self.system_name))
            .with("CreationClassName", s(SERVICE))
            .with("Name", s(SERVICE_NAME))
            .with("ElementName", s("ironlun replication service"))
            .with("OperationalStatus", u16a([2]))
            .with("EnabledState", CimValue::Uint16(2))
            .with("Started", CimValue::Boolean(true))
    }

    fn capabilities(&self) -> Instance {
        let mut ops: Vec<u32> = Vec::new();
        for t in SyncType::ALL {
            for st in table::reachable(*t) {
                for op in table::supported_operations(*t, *st) {
                    if !ops.contains(&op.cim()) {
                        ops.push(op.cim());
                    }
                }
            }
        }
        ops.sort_unstable();
        let types = REPLICATION_TYPES
            .iter()
            .filter(|(_, t, m)| SyncType::ALL.contains(t) && Mode::ALL.contains(m))
            .map(|(n, _, _)| u32::from(*n));
        Instance::new(CAPS)
            .with("InstanceID", s(CAPS_ID))
            .with("ElementName", s("ironlun replication capabilities"))
            .with("SupportedReplicationTypes", u16a(types))
            .with(
                "SupportedSyncTypes",
                u16a(SyncType::ALL.iter().map(|t| t.cim())),
            )
            .with(
                "SupportedSynchronousActions",
                u16a(
                    ACTIONS
                        .iter()
                        .chain(SYNCHRONOUS_ONLY_ACTIONS)
                        .map(|a| u32::from(*a)),
                ),
            )
            .with(
                "SupportedAsynchronousActions",
                u16a(ACTIONS.iter().map(|a| u32::from(*a))),
            )
            .with("SupportedStorageObjects", u16a([2]))
            .with("SupportedModifyOperations", u16a(ops))
    }

    fn sync_instance(&self, sy: &Synchronization) -> Instance {
        let (methodology, replica_type) = match sy.sync_type {
            // Copy-On-Write / Before Delta; Full-Copy / Full Copy.
            SyncType::Snapshot => (6, 4),
            _ => (3, 2),
        };
        Instance::new(SYNC)
            .with(
                "SystemElement",
                CimValue::Reference(self.volume_path(&sy.source)),
            )
            .with(
                "SyncedElement",
                CimValue::Reference(self.volume_path(&sy.target)),
            )
            .with("SyncType", u16v(sy.sync_type.cim()))
            .with("Mode", u16v(sy.mode.cim()))
            .with("CopyState", u16v(sy.copy_state.cim()))
            .with("RequestedCopyState", u16v(CopyState::NotApplicable.cim()))
            .with("ProgressStatus", u16v(sy.progress.cim()))
            .with("PercentSynced", u16v(u32::from(sy.percent_synced)))
            .with(
                "SyncMaintained",
                CimValue::Boolean(sy.sync_type == SyncType::Mirror),
            )
            .with("WhenEstablished", ts(Some(sy.when_established)))
            .with("WhenActivated", ts(sy.when_activated))
            .with("WhenSynced", ts(sy.when_synced))
            .with("WhenSynchronized", ts(sy.when_synced))
            .with("WhenDeactivated", ts(sy.when_deactivated))
            .with("WhenSuspended", ts(sy.when_suspended))
            .with("CopyMethodology", CimValue::Uint16(methodology))
            .with("ReplicaType", CimValue::Uint16(replica_type))
    }

    fn job_instance(&self, j: &Job) -> Instance {
        let ops: &[u32] = match j.state {
            JobState::Completed => &[2, 17],
            JobState::Exception => &[6, 17],
            JobState::Terminated | JobState::Killed => &[10, 17],
            _ => &[2],
        };
        let mut inst = Instance::new(JOB)
            .with("InstanceID", s(j.id.to_string()))
            .with("Name", s(&j.method))
            .with(
                "ElementName",
                s(format!("{} ({})", j.method, j.destination)),
            )
            .with(
                "Description",
                s(format!("{} onto {}", j.method, j.destination)),
            )
            .with("JobState", u16v(j.state.cim()))
            .with("JobStatus", s(j.state.label()))
            .with("PercentComplete", u16v(u32::from(j.percent_complete)))
            .with("OperationalStatus", u16a(ops.iter().copied()))
            .with("TimeSubmitted", ts(Some(j.time_submitted)))
            .with("StartTime", ts(j.start_time))
            .with("ElapsedTime", CimValue::DateTime(cim_interval(j.elapsed())))
            .with(
                "TimeOfLastStateChange",
                ts(Some(j.time_of_last_state_change)),
            )
            .with("DeleteOnCompletion", CimValue::Boolean(true))
            .with(
                "TimeBeforeRemoval",
                CimValue::DateTime(cim_interval(Duration::from_millis(
                    j.time_before_removal_ms,
                ))),
            )
            .with("MethodName", s(&j.method));
        if let Some(e) = &j.error {
            inst.set("ErrorCode", CimValue::Uint16(4));
            inst.set("ErrorDescription", s(e));
        }
        inst
    }

    fn job_path(&self, id: JobId) -> ObjectPath {
        ObjectPath::new(JOB).key("InstanceID", id.to_string())
    }

    fn aspect_instance(&self, a: &ironlun_replication::SynchronizationAspect) -> Instance {
        Instance::new(ASPECT)
            .with("InstanceID", s(format!("{ASPECT_PREFIX}{}", a.id)))
            .with("ElementName", s(&a.name))
            .with("SyncType", u16v(a.sync_type.cim()))
            .with(
                "ConsistencyEnabled",
                CimValue::Boolean(a.consistency == Consistency::Sequential),
            )
            .with("ConsistencyType", CimValue::Uint16(2))
            .with("CopyMethodology", CimValue::Uint16(6))
            .with("WhenPointInTime", ts(Some(a.when_point_in_time)))
            .with(
                "SourceElement",
                s(a.sources
                    .first()
                    .map(|e| self.volume_path(e).to_string())
                    .unwrap_or_default()),
            )
            .with("AutoDelete", CimValue::Boolean(false))
    }

    fn aspect_path(&self, id: u64) -> ObjectPath {
        ObjectPath::new(ASPECT).key("InstanceID", format!("{ASPECT_PREFIX}{id}"))
    }

    fn sds_path(&self, source: &ElementRef, aspect: u64) -> ObjectPath {
        ObjectPath::new(SDS)
            .key_ref("ManagedElement", self.volume_path(source))
            .key_ref("SettingData", self.aspect_path(aspect))
    }

    fn group_path(&self, id: u64, side: &str) -> ObjectPath {
        ObjectPath::new(GROUP).key("InstanceID", format!("{GROUP_PREFIX}{id}-{side}"))
    }

    /// The group synchronization id and side of a ReplicationGroup path.
    fn parse_group(&self, p: &ObjectPath) -> Option<(u64, bool)> {
        let id = p.key_str("InstanceID")?;
        let rest = id.get(GROUP_PREFIX.len()..)?;
        if !id[..GROUP_PREFIX.len()].eq_ignore_ascii_case(GROUP_PREFIX) {
            return None;
        }
        let (n, side) = rest.split_once('-')?;
        Some((n.parse().ok()?, side.eq_ignore_ascii_case("source")))
    }

    fn group_members(&self, id: u64, source: bool) -> Option<Vec<ElementRef>> {
        let g = self.svc.group(id)?;
        Some(
            g.members
                .iter()
                .filter_map(|m| self.svc.synchronization(*m))
                .map(|sy| if source { sy.source } else { sy.target })
                .collect(),
        )
    }

    /// The id of a group made by CreateGroup (`IRONLUN:group-<n>-elements`).
    fn parse_element_group(&self, p: &ObjectPath) -> Option<u64> {
        let id = p.key_str("InstanceID")?;
        let rest = id.get(GROUP_PREFIX.len()..)?;
        if !id[..GROUP_PREFIX.len()].eq_ignore_ascii_case(GROUP_PREFIX) {
            return None;
        }
        let (n, side) = rest.split_once('-')?;
        if !side.eq_ignore_ascii_case(ELEMENTS_SIDE) {
            return None;
        }
        n.parse().ok()
    }

    /// CreateGroup: a group of volumes to use as a SourceGroup or
    /// TargetGroup.
    fn create_group(&self, params: &Params) -> MResult<MethodOutcome> {
        self.check_setting_data(params)?;
        let members = match params.get("Members") {
            Some(CimValue::Array(items)) => {
                let mut m = Vec::new();
                for item in items {
                    match item {
                        CimValue::Reference(p) => m.push(self.element(p, "Members")?),
                        _ => return Err(invalid("Members: not an array of references")),
                    }
                }
                m
            }
            Some(CimValue::Reference(p)) => vec![self.element(p, "Members")?],
            Some(_) => return Err(invalid("Members: not an array of references")),
            None => return Err(invalid("Members: a group needs at least one element")),
        };
        let name = params
            .str("GroupName")
            .map(str::to_string)
            .unwrap_or_else(|| format!("group-{}", ironlun_replication::job::now_ms()));
        let id = self.svc.create_element_group(&name, &members)?;
        Ok(MethodOutcome::code(0).with(
            "ReplicationGroup",
            CimValue::Reference(self.group_path(id, ELEMENTS_SIDE)),
        ))
    }

    /// DeleteGroup of a group made by CreateGroup (its volumes stay).
    fn delete_group(&self, params: &Params) -> MResult<MethodOutcome> {
        let g = params
            .reference("ReplicationGroup")
            .ok_or_else(|| invalid("ReplicationGroup is required"))?;
        if params.bool("RemoveElements") == Some(true) {
            return Err(unsupported(
                "RemoveElements: deleting the member volumes is not supported",
            ));
        }
        let id = self.parse_element_group(g).ok_or_else(|| {
            invalid("ReplicationGroup: not a group made by CreateGroup (a group synchronization's groups end with it)")
        })?;
        self.svc.delete_element_group(id)?;
        Ok(MethodOutcome::code(0))
    }

    fn group_instances(&self) -> (Vec<Instance>, Vec<Instance>, Vec<Instance>) {
        let (mut groups, mut gsyncs, mut members) = (Vec::new(), Vec::new(), Vec::new());
        for g in self.svc.element_groups() {
            let gp = self.group_path(g.id, ELEMENTS_SIDE);
            groups.push(
                Instance::new(GROUP)
                    .with(
                        "InstanceID",
                        s(gp.key_str("InstanceID").unwrap_or_default()),
                    )
                    .with("ElementName", s(g.name.clone()))
                    .with("Persistent", CimValue::Boolean(true))
                    .with("DeleteOnEmptyElement", CimValue::Boolean(false))
                    .with("DeleteOnUnassociated", CimValue::Boolean(false))
                    .with("ConsistentPointInTime", CimValue::Boolean(false)),
            );
            for (i, e) in g.members.iter().enumerate() {
                members.push(
                    Instance::new(MEMBER)
                        .with("Collection", CimValue::Reference(gp.clone()))
                        .with("Member", CimValue::Reference(self.volume_path(e)))
                        .with("AssignedSequence", CimValue::Uint64(i as u64 + 1)),
                );
            }
        }
        for g in self.svc.groups() {
            let syncs: Vec<Synchronization> = g
                .members
                .iter()
                .filter_map(|m| self.svc.synchronization(*m))
                .collect();
            for (side, source) in [("source", true), ("target", false)] {
                let gp = self.group_path(g.id, side);
                groups.push(
                    Instance::new(GROUP)
                        .with(
                            "InstanceID",
                            s(gp.key_str("InstanceID").unwrap_or_default()),
                        )
                        .with("ElementName", s(format!("{} ({side})", g.name)))
                        .with("Persistent", CimValue::Boolean(true))
                        .with("DeleteOnEmptyElement", CimValue::Boolean(false))
                        .with("DeleteOnUnassociated", CimValue::Boolean(false))
                        .with(
                            "ConsistentPointInTime",
                            CimValue::Boolean(g.consistency == Consistency::Sequential),
                        )
                        .with("SupportedSyncTypes", u16a([g.sync_type.cim()])),
                );
                for (i, sy) in syncs.iter().enumerate() {
                    let e = if source { &sy.source } else { &sy.target };
                    members.push(
                        Instance::new(MEMBER)
                            .with("Collection", CimValue::Reference(gp.clone()))
                            .with("Member", CimValue::Reference(self.volume_path(e)))
                            .with("AssignedSequence", CimValue::Uint64(i as u64 + 1)),
                    );
                }
            }
            let state = self
                .svc
                .group_copy_state(g.id)
                .unwrap_or(CopyState::NotApplicable);
            let progress = match syncs.first().map(|x| x.progress) {
                Some(p) if syncs.iter().all(|x| x.progress == p) => p,
                Some(_) => ProgressStatus::Mixed,
                None => ProgressStatus::NotApplicable,
            };
            let mut inst = Instance::new(GROUP_SYNC)
                .with(
                    "SystemElement",
                    CimValue::Reference(self.group_path(g.id, "source")),
                )
                .with(
                    "SyncedElement",
                    CimValue::Reference(self.group_path(g.id, "target")),
                )
                .with("SyncType", u16v(g.sync_type.cim()))
                .with("CopyState", u16v(state.cim()))
                .with("RequestedCopyState", u16v(CopyState::NotApplicable.cim()))
                .with("ProgressStatus", u16v(progress.cim()))
                .with(
                    "PercentSynced",
                    u16v(
                        syncs
                            .iter()
                            .map(|x| u32::from(x.percent_synced))
                            .min()
                            .unwrap_or(0),
                    ),
                )
                .with(
                    "SyncMaintained",
                    CimValue::Boolean(g.sync_type == SyncType::Mirror),
                );
            if let Some(first) = syncs.first() {
                inst.set("Mode", u16v(first.mode.cim()));
                inst.set("WhenEstablished", ts(Some(first.when_established)));
                inst.set("WhenActivated", ts(first.when_activated));
                inst.set("WhenSynced", ts(first.when_synced));
            }
            gsyncs.push(inst);
        }
        (groups, gsyncs, members)
    }

    fn profile(&self) -> Instance {
        Instance::new(PROFILE)
            .with("InstanceID", s("IRONLUN:profile-ReplicationServices"))
            .with("RegisteredOrganization", CimValue::Uint16(11))
            .with("RegisteredName", s("Replication Services"))
            .with("RegisteredVersion", s("1.5.0"))
            .with("AdvertiseTypes", u16a([3]))
    }

    fn instances(&self, class: &str) -> Vec<Instance> {
        match class {
            VOLUME => self.volumes(),
            POOL => self
                .pools
                .iter()
                .filter_map(|p| self.pool_instance(p))
                .collect(),
            ALLOCATED => {
                let mut out = Vec::new();
                for p in &self.pools {
                    let Some(pool) = self.pool_instance(p) else {
                        continue;
                    };
                    let pp = path(POOL, &pool);
                    for v in self.volumes() {
                        let ours = v
                            .get("DeviceID")
                            .and_then(CimValue::as_str)
                            .is_some_and(|d| d.split_once('/').map(|x| x.0) == Some(p.as_str()));
                        if ours {
                            let bytes = v
                                .get("NumberOfBlocks")
                                .and_then(CimValue::as_u64)
                                .unwrap_or(0)
                                * v.get("BlockSize").and_then(CimValue::as_u64).unwrap_or(0);
                            out.push(
                                Instance::new(ALLOCATED)
                                    .with("Antecedent", CimValue::Reference(pp.clone()))
                                    .with("Dependent", reference(VOLUME, &v))
                                    .with("SpaceConsumed", CimValue::Uint64(bytes)),
                            );
                        }
                    }
                }
                out
            }
            SERVICE => vec![self.service()],
            CAPS => vec![self.capabilities()],
            ELEMENT_CAPS => vec![Instance::new(ELEMENT_CAPS)
                .with("ManagedElement", reference(SERVICE, &self.service()))
                .with("Capabilities", reference(CAPS, &self.capabilities()))
                .with("Characteristics", u16a([2]))],
            SYNC => self
                .svc
                .synchronizations()
                .iter()
                .map(|sy| self.sync_instance(sy))
                .collect(),
            JOB => self
                .svc
                .jobs()
                .iter()
                .map(|j| self.job_instance(j))
                .collect(),
            AFFECTED => self
                .svc
                .jobs()
                .iter()
                .map(|j| {
                    Instance::new(AFFECTED)
                        .with(
                            "AffectedElement",
                            CimValue::Reference(self.volume_path(&j.destination)),
                        )
                        .with("AffectingElement", CimValue::Reference(self.job_path(j.id)))
                        // 5 Create / 3 Exclusive Use.
                        .with("ElementEffects", u16a([5]))
                })
                .collect(),
            ASPECT => self
                .svc
                .aspects()
                .iter()
                .map(|a| self.aspect_instance(a))
                .collect(),
            SDS => {
                let mut out = Vec::new();
                for a in self.svc.aspects() {
                    for src in &a.sources {
                        let p = self.sds_path(src, a.id);
                        let mut inst = Instance::new(SDS);
                        for (k, v) in p.keys {
                            if let KeyValue::Reference(r) = v {
                                inst.set(k, CimValue::Reference(*r));
                            }
                        }
                        out.push(inst);
                    }
                }
                out
            }
            GROUP => self.group_instances().0,
            GROUP_SYNC => self.group_instances().1,
            MEMBER => self.group_instances().2,
            PROFILE => vec![self.profile()],
            CONFORMS => vec![Instance::new(CONFORMS)
                .with("ConformantStandard", reference(PROFILE, &self.profile()))
                .with(
                    "ManagedElement",
                    CimValue::Reference(
                        path(SERVICE, &self.service())
                            .with_namespace(schema::IMPLEMENTATION_NAMESPACE),
                    ),
                )],
            _ => Vec::new(),
        }
    }

    // ---- references in parameters ------------------------------------------

    /// The element a volume reference names (only DeviceID is needed).
    fn element(&self, p: &ObjectPath, param: &str) -> MResult<ElementRef> {
        let id = p
            .key_str("DeviceID")
            .ok_or_else(|| invalid(format!("{param}: the reference has no DeviceID key")))?;
        let (pool, name) = id
            .split_once('/')
            .ok_or_else(|| invalid(format!("{param}: DeviceID {id:?} is not <pool>/<name>")))?;
        let e = ElementRef::new(pool, name);
        let exists = self
            .svc
            .pool(pool)
            .map(|p| p.device(name).is_ok())
            .unwrap_or(false);
        if !exists || name.starts_with('.') {
            return Err(invalid(format!("{param}: no volume {id:?}")));
        }
        Ok(e)
    }

    fn pool_name(&self, p: &ObjectPath, param: &str) -> MResult<String> {
        let name = p
            .key_str("InstanceID")
            .and_then(|i| {
                i.get(..POOL_PREFIX.len())
                    .filter(|x| x.eq_ignore_ascii_case(POOL_PREFIX))
                    .map(|_| &i[POOL_PREFIX.len()..])
            })
            .or_else(|| p.key_str("PoolID"))
            .ok_or_else(|| invalid(format!("{param}: not a pool reference")))?;
        if !self.pools.iter().any(|x| x == name) {
            return Err(invalid(format!("{param}: no pool {name:?}")));
        }
        Ok(name.to_string())
    }

    /// The element synchronization a StorageSynchronized reference names.
    fn sync_id(&self, p: &ObjectPath, param: &str) -> MResult<u64> {
        let dev = |k: &str| match p.get_key(k) {
            Some(KeyValue::Reference(r)) => r.key_str("DeviceID").map(str::to_string),
            _ => None,
        };
        let (src, tgt) = (dev("SystemElement"), dev("SyncedElement"));
        if src.is_none() && tgt.is_none() {
            return Err(invalid(format!(
                "{param}: the reference names neither SystemElement nor SyncedElement"
            )));
        }
        let found: Vec<u64> = self
            .svc
            .synchronizations()
            .iter()
            .filter(|sy| {
                tgt.as_ref().is_none_or(|t| *t == sy.target.to_string())
                    && src.as_ref().is_none_or(|x| *x == sy.source.to_string())
            })
            .map(|sy| sy.id)
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(invalid(format!("{param}: no such synchronization"))),
            _ => Err(invalid(format!(
                "{param}: the reference names several synchronizations"
            ))),
        }
    }

    fn wait_for(&self, params: &Params) -> MResult<Option<WaitFor>> {
        match params.u64("WaitForCopyState") {
            None => Ok(None),
            Some(n) => {
                let state = u32::try_from(n)
                    .ok()
                    .and_then(CopyState::from_cim)
                    .ok_or_else(|| invalid(format!("WaitForCopyState: {n} is not a CopyState")))?;
                Ok(Some(WaitFor {
                    state,
                    timeout: self.wait_timeout,
                }))
            }
        }
    }

    fn sync_type(&self, params: &Params) -> MResult<SyncType> {
        let n = params.u64("SyncType").unwrap_or(0);
        u32::try_from(n)
            .ok()
            .and_then(SyncType::from_cim)
            .ok_or_else(|| {
                if n == 9 {
                    unsupported("SyncType: 9 TokenizedClone is not offered")
                } else {
                    invalid(format!("SyncType: {n} is not 6, 7 or 8"))
                }
            })
    }

    fn mode(&self, params: &Params) -> MResult<Option<Mode>> {
        match params.u64("Mode") {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .ok()
                .and_then(Mode::from_cim)
                .map(Some)
                .ok_or_else(|| {
                    if n == 4 {
                        unsupported("Mode: 4 Adaptive is not offered")
                    } else {
                        invalid(format!("Mode: {n} is not 2 or 3"))
                    }
                }),
        }
    }

    fn consistency(&self, params: &Params) -> MResult<Option<Consistency>> {
        match params.u64("Consistency") {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .ok()
                .and_then(Consistency::from_cim)
                .map(Some)
                .ok_or_else(|| invalid(format!("Consistency: {n} is not 2 or 3"))),
        }
    }

    fn no_remote(&self, params: &Params, names: &[&str]) -> MResult<()> {
        for n in names {
            if params.get(n).is_some() {
                return Err(unsupported(format!(
                    "{n}: remote replication is not offered"
                )));
            }
        }
        Ok(())
    }

    fn check_setting_data(&self, params: &Params) -> MResult<()> {
        if let Some(i) = params.instance("ReplicationSettingData") {
            if !i
                .class_name
                .eq_ignore_ascii_case("CIM_ReplicationSettingData")
            {
                return Err(invalid(format!(
                    "ReplicationSettingData: a {} is not a CIM_ReplicationSettingData",
                    i.class_name
                )));
            }
        }
        Ok(())
    }

    /// The common output of the replication methods.
    fn outcome(&self, reply: &Reply) -> MethodOutcome {
        let mut out = MethodOutcome::code(reply.code().cim());
        if let Some(j) = reply.jobs.first() {
            out = out.with("Job", CimValue::Reference(self.job_path(*j)));
        }
        out
    }

    // ---- the methods ---------------------------------------------------------

    fn create_element_replica(&self, params: &Params) -> MResult<MethodOutcome> {
        let sync_type = self.sync_type(params)?;
        let mode = self.mode(params)?;
        self.no_remote(
            params,
            &[
                "SourceAccessPoint",
                "TargetAccessPoint",
                "ConnectivityCollection",
                "Collections",
            ],
        )?;
        self.check_setting_data(params)?;
        let source = self.element(
            params
                .reference("SourceElement")
                .ok_or_else(|| invalid("SourceElement is required"))?,
            "SourceElement",
        )?;
        let target = params
            .reference("TargetElement")
            .map(|p| self.element(p, "TargetElement"))
            .transpose()?;
        if target.is_some() && params.get("TargetSettingGoal").is_some() {
            return Err(invalid(
                "TargetSettingGoal must be NULL when TargetElement is given",
            ));
        }
        if target.is_some() && params.get("TargetPool").is_some() {
            return Err(invalid(
                "TargetPool must be NULL when TargetElement is given",
            ));
        }
        let target_pool = params
            .reference("TargetPool")
            .map(|p| self.pool_name(p, "TargetPool"))
            .transpose()?;
        let mut req = ElementReplicaRequest::new(sync_type, source);
        req.element_name = params.str("ElementName").map(str::to_string);
        req.mode = mode;
        req.target = target;
        req.target_pool = target_pool;
        req.wait_for = self.wait_for(params)?;
        let reply = self.svc.create_element_replica(req)?;
        let mut out = self.outcome(&reply);
        if let Some(t) = reply.targets.first() {
            out = out.with("TargetElement", CimValue::Reference(self.volume_path(t)));
        }
        if let Some(sy) = reply
            .synchronization
            .and_then(|id| self.svc.synchronization(id))
        {
            out = out.with(
                "Synchronization",
                CimValue::Reference(path(SYNC, &self.sync_instance(&sy))),
            );
        }
        Ok(out)
    }

    /// The members of a SourceGroup / TargetGroup reference: a group made
    /// by CreateGroup, or either side of a group synchronization.
    fn group_elements(&self, p: &ObjectPath, param: &str) -> MResult<Vec<ElementRef>> {
        if let Some(id) = self.parse_element_group(p) {
            return self
                .svc
                .element_group(id)
                .map(|g| g.members)
                .ok_or_else(|| invalid(format!("{param}: no such group")));
        }
        let (id, source) = self
            .parse_group(p)
            .ok_or_else(|| invalid(format!("{param}: not a replication group of this service")))?;
        self.group_members(id, source)
            .ok_or_else(|| invalid(format!("{param}: no such group")))
    }

    fn create_group_replica(&self, params: &Params) -> MResult<MethodOutcome> {
        let sync_type = self.sync_type(params)?;
        let mode = self.mode(params)?;
        self.no_remote(params, &["SourceAccessPoint", "TargetAccessPoint"])?;
        self.check_setting_data(params)?;
        let sources = match (
            params.reference("SourceGroup"),
            params.reference("SourceElement"),
        ) {
            (Some(g), None) => self.group_elements(g, "SourceGroup")?,
            (None, Some(e)) => vec![self.element(e, "SourceElement")?],
            _ => {
                return Err(invalid(
                    "exactly one of SourceGroup and SourceElement is required",
                ))
            }
        };
        let count = params
            .u64("TargetElementCount")
            .map(|n| {
                u32::try_from(n)
                    .map_err(|_| invalid(format!("TargetElementCount: {n} is too large")))
            })
            .transpose()?;
        let targets = match params.reference("TargetGroup") {
            Some(g) => {
                if count.is_some() {
                    return Err(invalid(
                        "TargetGroup and TargetElementCount are mutually exclusive",
                    ));
                }
                if params.get("TargetPool").is_some() {
                    return Err(invalid("TargetPool must be NULL when TargetGroup is given"));
                }
                let t = self.group_elements(g, "TargetGroup")?;
                if t.len() != sources.len() {
                    return Err(invalid(format!(
                        "TargetGroup: {} elements for {} source elements (the counts must match)",
                        t.len(),
                        sources.len()
                    )));
                }
                Some(t)
            }
            None if params.get("TargetGroup").is_some() => {
                return Err(invalid("TargetGroup: not a reference"))
            }
            None => None,
        };
        if params.get("TargetSettingGoal").is_some() {
            // Accepted: targets take the source's settings.
        }
        let target_pool = params
            .reference("TargetPool")
            .map(|p| self.pool_name(p, "TargetPool"))
            .transpose()?;
        let relationship_name = params
            .str("RelationshipName")
            .map(str::to_string)
            .unwrap_or_else(|| format!("group-{}", ironlun_replication::job::now_ms()));
        let req = GroupReplicaRequest {
            relationship_name,
            sync_type,
            mode,
            sources,
            target_element_count: count,
            target_pool,
            consistency: self.consistency(params)?.unwrap_or(Consistency::Sequential),
            wait_for: self.wait_for(params)?,
        };
        let reply = self.svc.create_group_replica_onto(req, targets)?;
        let mut out = self.outcome(&reply);
        if let Some(g) = reply.synchronization {
            out = out
                .with(
                    "TargetGroup",
                    CimValue::Reference(self.group_path(g, "target")),
                )
                .with(
                    "Synchronization",
                    CimValue::Reference(
                        ObjectPath::new(GROUP_SYNC)
                            .key_ref("SystemElement", self.group_path(g, "source"))
                            .key_ref("SyncedElement", self.group_path(g, "target")),
                    ),
                );
        }
        Ok(out)
    }

    fn create_synchronization_aspect(&self, params: &Params) -> MResult<MethodOutcome> {
        let sync_type = self.sync_type(params)?;
        self.mode(params)?;
        self.no_remote(params, &["SourceAccessPoint"])?;
        self.check_setting_data(params)?;
        let sources = match (
            params.reference("SourceGroup"),
            params.reference("SourceElement"),
        ) {
            (Some(g), None) => self.group_elements(g, "SourceGroup")?,
            (None, Some(e)) => vec![self.element(e, "SourceElement")?],
            _ => {
                return Err(invalid(
                    "exactly one of SourceGroup and SourceElement is required",
                ))
            }
        };
        let req = AspectRequest {
            name: params.str("Name").map(str::to_string),
            sync_type,
            sources: sources.clone(),
            consistency: self.consistency(params)?.unwrap_or(Consistency::Sequential),
        };
        let reply = self.svc.create_synchronization_aspect(req)?;
        let mut out = self.outcome(&reply);
        if let (Some(a), Some(src)) = (reply.settings_state, sources.first()) {
            out = out.with("SettingsState", CimValue::Reference(self.sds_path(src, a)));
        }
        Ok(out)
    }

    fn modify_replica_synchronization(&self, params: &Params) -> MResult<MethodOutcome> {
        let n = params.u64("Operation").unwrap_or(0);
        let op = u32::try_from(n)
            .ok()
            .and_then(Operation::from_cim)
            .ok_or_else(|| invalid(format!("Operation: {n} is not an operation")))?;
        self.check_setting_data(params)?;
        let wait = self.wait_for(params)?;
        let sref = params
            .reference("Synchronization")
            .ok_or_else(|| invalid("Synchronization is required"))?;
        let group = match sref.get_key("SystemElement") {
            Some(KeyValue::Reference(r)) => self.parse_group(r),
            _ => None,
        };
        let group = group.or_else(|| match sref.get_key("SyncedElement") {
            Some(KeyValue::Reference(r)) => self.parse_group(r),
            _ => None,
        });
        let reply = match group {
            Some((gid, _)) => {
                let mut pairs = Vec::new();
                if let Some(CimValue::Array(items)) = params.get("SyncPair") {
                    for it in items {
                        if let CimValue::Reference(p) = it {
                            pairs.push(self.sync_id(p, "SyncPair")?);
                        }
                    }
                }
                self.svc
                    .modify_group_synchronization(gid, op, &pairs, wait)?
            }
            None => {
                let id = self.sync_id(sref, "Synchronization")?;
                self.svc.modify_replica_synchronization(id, op, wait)?
            }
        };
        let mut out = self.outcome(&reply);
        if let Some(a) = reply.settings_state {
            if let Some(asp) = self.svc.aspects().into_iter().find(|x| x.id == a) {
                if let Some(src) = asp.sources.first() {
                    out = out.with("SettingsState", CimValue::Reference(self.sds_path(src, a)));
                }
            }
        }
        if group.is_none() {
            if let Some(sy) = reply
                .synchronization
                .and_then(|id| self.svc.synchronization(id))
            {
                out = out.with(
                    "UpdatedSynchronization",
                    CimValue::Reference(path(SYNC, &self.sync_instance(&sy))),
                );
            }
        }
        Ok(out)
    }

    fn modify_settings_define_state(&self, params: &Params) -> MResult<MethodOutcome> {
        let n = params.u64("Operation").unwrap_or(0);
        let op = u32::try_from(n)
            .ok()
            .and_then(AspectOperation::from_cim)
            .ok_or_else(|| {
                invalid(format!(
                    "Operation: {n} is not a ModifySettingsDefineState operation"
                ))
            })?;
        let sds = params
            .reference("SettingsState")
            .ok_or_else(|| invalid("SettingsState is required"))?;
        let aspect = match sds.get_key("SettingData") {
            Some(KeyValue::Reference(r)) => r
                .key_str("InstanceID")
                .and_then(|i| parse_id(i, ASPECT_PREFIX)),
            _ => None,
        }
        .ok_or_else(|| {
            invalid(
                "SettingsState: its SettingData is not a synchronization aspect of this service",
            )
        })?;
        let asp = self
            .svc
            .aspects()
            .into_iter()
            .find(|a| a.id == aspect)
            .ok_or_else(|| invalid("SettingsState: no such synchronization aspect"))?;
        if params.get("TargetGroup").is_some() {
            return Err(unsupported("TargetGroup: give TargetElement or TargetPool"));
        }
        let mut targets = Vec::new();
        if let Some(t) = params.reference("TargetElement") {
            let id = t
                .key_str("DeviceID")
                .ok_or_else(|| invalid("TargetElement: the reference has no DeviceID key"))?;
            let (pool, name) = id.split_once('/').ok_or_else(|| {
                invalid(format!(
                    "TargetElement: DeviceID {id:?} is not <pool>/<name>"
                ))
            })?;
            targets.push(ElementRef::new(pool, name));
        } else if let Some(p) = params.reference("TargetPool") {
            let pool = self.pool_name(p, "TargetPool")?;
            for i in 0..asp.sources.len() {
                targets.push(ElementRef::new(
                    pool.clone(),
                    format!("{}_{}", asp.name, i + 1),
                ));
            }
        }
        let wait = self.wait_for(params)?;
        let reply = self
            .svc
            .modify_settings_define_state(aspect, op, &targets)?;
        let mut reply = reply;
        if let (Some(w), Some(id)) = (wait, reply.synchronization) {
            match self.svc.wait_for_copy_state(id, w.state, w.timeout) {
                Ok(()) => {
                    if reply.code() == ironlun_replication::model::ReturnCode::JobStarted {
                        reply.code = Some(ironlun_replication::model::ReturnCode::Completed);
                    }
                }
                Err(ReplicationError::Timeout(_)) => {
                    reply.code = Some(ironlun_replication::model::ReturnCode::Timeout)
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut out = self.outcome(&reply);
        if let Some(sy) = reply
            .synchronization
            .and_then(|id| self.svc.synchronization(id))
        {
            out = out.with(
                "Synchronization",
                CimValue::Reference(path(SYNC, &self.sync_instance(&sy))),
            );
        }
        Ok(out)
    }

    fn job_id(&self, target: &ObjectPath) -> MResult<JobId> {
        target
            .key_str("InstanceID")
            .and_then(|i| parse_id(i, JOB_PREFIX))
            .map(JobId)
            .ok_or_else(|| invalid("the target is not a job of this service"))
    }

    fn request_state_change(&self, target: &ObjectPath, params: &Params) -> MResult<MethodOutcome> {
        let id = self.job_id(target)?;
        let n = params.u64("RequestedState").unwrap_or(0);
        let req = u32::try_from(n)
            .ok()
            .and_then(JobRequest::from_cim)
            .ok_or_else(|| invalid(format!("RequestedState: {n} is not 2..6")))?;
        if params.get("TimeoutPeriod").is_some() {
            // 4098 Timeout Parameter Not Supported.
            return Ok(MethodOutcome::code(4098));
        }
        let job = self
            .svc
            .job(id)
            .ok_or_else(|| invalid(format!("no job {id}")))?;
        if job.state.is_final() {
            // 4097 Invalid State Transition.
            return Ok(MethodOutcome::code(4097));
        }
        let code = self.svc.request_job_state_change(id, req)?;
        Ok(MethodOutcome::code(code.cim()))
    }

    fn get_errors(&self, target: &ObjectPath) -> MResult<MethodOutcome> {
        let id = self.job_id(target)?;
        let job = self
            .svc
            .job(id)
            .ok_or_else(|| invalid(format!("no job {id}")))?;
        let errors = job
            .error
            .iter()
            .map(|e| {
                CimValue::Instance(Box::new(
                    Instance::new("CIM_Error")
                        // 4 Software Error, 1 CIM_ERR_FAILED, 5 Major.
                        .with("ErrorType", CimValue::Uint16(4))
                        .with("CIMStatusCode", CimValue::Uint32(1))
                        .with("PerceivedSeverity", CimValue::Uint16(5))
                        .with("Message", s(e))
                        .with("ErrorSource", s(id.to_string()))
                        .with("OwningEntity", s("IRONLUN")),
                ))
            })
            .collect();
        Ok(MethodOutcome::code(0).with("Errors", CimValue::Array(errors)))
    }

    // ---- capabilities ----------------------------------------------------------

    fn replication_type(&self, params: &Params) -> MResult<(SyncType, Mode)> {
        let n = params.u64("ReplicationType").unwrap_or(0);
        REPLICATION_TYPES
            .iter()
            .find(|(t, _, _)| u64::from(*t) == n)
            .map(|(_, t, m)| (*t, *m))
            .ok_or_else(|| unsupported(format!("ReplicationType {n} is not offered")))
    }

    fn capability_method(&self, name: &str, params: &Params) -> MResult<MethodOutcome> {
        if name == "ConvertSyncTypeToReplicationType" {
            let st = params.u64("SyncType");
            let mode = params
                .u64("Mode")
                .unwrap_or(u64::from(Mode::Asynchronous.cim() as u16));
            let remote = params.u64("LocalOrRemote").is_some_and(|v| v == 3);
            let rt = REPLICATION_TYPES
                .iter()
                .find(|(_, t, m)| Some(u64::from(t.cim())) == st && u64::from(m.cim()) == mode)
                .map(|(n, _, _)| *n)
                .filter(|_| !remote)
                .unwrap_or(0);
            return Ok(MethodOutcome {
                return_value: CimValue::Uint16(rt),
                out_params: Vec::new(),
            });
        }
        let (t, _mode) = self.replication_type(params)?;
        let out = match name {
            "GetSupportedOperations" => {
                let states: Vec<CopyState> = match params.u64("CopyState") {
                    Some(n) => vec![u32::try_from(n)
                        .ok()
                        .and_then(CopyState::from_cim)
                        .ok_or_else(|| invalid(format!("CopyState: {n} is not a CopyState")))?],
                    None => table::reachable(t).to_vec(),
                };
                let mut ops: Vec<u32> = Vec::new();
                for st in states {
                    for op in table::supported_operations(t, st) {
                        if !ops.contains(&op.cim()) {
                            ops.push(op.cim());
                        }
                    }
                }
                ops.sort_unstable();
                MethodOutcome::code(0).with("SupportedOperations", u16a(ops))
            }
            "GetSupportedCopyStates" => {
                let op = params
                    .u64("Operation")
                    .map(|n| {
                        u32::try_from(n)
                            .ok()
                            .and_then(Operation::from_cim)
                            .ok_or_else(|| invalid(format!("Operation: {n} is not an operation")))
                    })
                    .transpose()?;
                let states: Vec<CopyState> = match op {
                    Some(op) => table::supported_copy_states(t, op),
                    None => table::reachable(t).to_vec(),
                };
                // HostAccessible is not sent: the engine does not publish
                // per-state host access, and the shim does not guess it.
                MethodOutcome::code(0)
                    .with("SupportedCopyStates", u16a(states.iter().map(|x| x.cim())))
            }
            "GetSupportedWaitForCopyStates" => MethodOutcome::code(0).with(
                "SupportedCopyStates",
                u16a(table::reachable(t).iter().map(|x| x.cim())),
            ),
            "GetSupportedFeatures" => {
                MethodOutcome::code(0).with("Features", CimValue::Array(Vec::new()))
            }
            "GetSupportedConsistency" => MethodOutcome::code(0).with(
                "SupportedConsistency",
                u16a(Consistency::ALL.iter().map(|c| c.cim())),
            ),
            "GetDefaultReplicationSettingData" => MethodOutcome::code(0).with(
                "DefaultInstance",
                CimValue::Instance(Box::new(
                    Instance::new("CIM_ReplicationSettingData")
                        .with("InstanceID", s(format!("IRONLUN:rsd-{}", t.cim())))
                        .with("ElementName", s(format!("default {}", t.label())))
                        .with(
                            "DesiredCopyMethodology",
                            CimValue::Uint16(if t == SyncType::Snapshot { 6 } else { 3 }),
                        ),
                )),
            ),
            _ => return Err(unsupported(format!("{name} is not implemented"))),
        };
        Ok(out)
    }
}

impl Provider for EngineProvider {
    fn enumerate_instances(
        &self,
        _namespace: &str,
        class: &'static ClassDecl,
    ) -> Result<Vec<Instance>, CimError> {
        Ok(self.instances(class.name))
    }

    fn get_instance(
        &self,
        _namespace: &str,
        class: &'static ClassDecl,
        path: &ObjectPath,
    ) -> Result<Instance, CimError> {
        self.instances(class.name)
            .into_iter()
            .find(|i| keys_match(path, i))
            .ok_or_else(|| CimError::not_found(format!("no instance {path}")))
    }

    fn references(
        &self,
        _namespace: &str,
        assoc: &'static ClassDecl,
        object: &ObjectPath,
    ) -> Result<Vec<Instance>, CimError> {
        Ok(self
            .instances(assoc.name)
            .into_iter()
            .filter(|i| {
                assoc.references().any(|r| {
                    i.get(r.name)
                        .and_then(CimValue::as_reference)
                        .is_some_and(|p| ref_matches(object, p))
                })
            })
            .collect())
    }

    fn invoke_method(
        &self,
        _namespace: &str,
        class: &'static ClassDecl,
        target: &ObjectPath,
        method: &'static MethodDecl,
        params: &Params,
    ) -> Result<MethodOutcome, CimError> {
        let result = match method.name {
            "CreateElementReplica" => self.create_element_replica(params),
            "CreateGroupReplica" => self.create_group_replica(params),
            "CreateSynchronizationAspect" => self.create_synchronization_aspect(params),
            "ModifyReplicaSynchronization" => self.modify_replica_synchronization(params),
            "ModifySettingsDefineState" => self.modify_settings_define_state(params),
            "CreateGroup" => self.create_group(params),
            "DeleteGroup" => self.delete_group(params),
            "RequestStateChange" => self.request_state_change(target, params),
            "GetErrors" => self.get_errors(target),
            m if class.name == CAPS => self.capability_method(m, params),
            m => Err(unsupported(format!(
                "{}.{m} is not implemented",
                class.name
            ))),
        };
        match result {
            Ok(out) => {
                tracing::info!(method = method.name, rc = ?out.return_value, "CIM method");
                Ok(out)
            }
            Err(r) => {
                tracing::info!(method = method.name, rc = r.code, why = %r.why, "CIM method refused");
                let rv = if method.ret == crate::value::CimType::Uint16 {
                    CimValue::Uint16(u16::try_from(r.code).unwrap_or(u16::MAX))
                } else {
                    CimValue::Uint32(r.code)
                };
                Ok(MethodOutcome {
                    return_value: rv,
                    out_params: Vec::new(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_named_is_declared() {
        for c in [
            VOLUME,
            POOL,
            SERVICE,
            CAPS,
            SYNC,
            JOB,
            AFFECTED,
            ASPECT,
            SDS,
            GROUP,
            GROUP_SYNC,
            MEMBER,
            ALLOCATED,
            ELEMENT_CAPS,
            PROFILE,
            CONFORMS,
        ] {
            assert_eq!(decl(c).name, c);
        }
    }

    #[test]
    fn datetimes() {
        assert_eq!(cim_timestamp(0), "19700101000000.000000+000");
        assert_eq!(
            cim_timestamp(1_795_305_600_123),
            "20261122000000.123000+000"
        );
        assert_eq!(
            cim_interval(Duration::from_secs(300)),
            "00000000000500.000000:000"
        );
        assert!(crate::value::is_datetime(&cim_timestamp(1_795_305_600_123)));
    }

    #[test]
    fn partial_keys() {
        let full = ObjectPath::new(VOLUME)
            .key("SystemName", "h")
            .key("DeviceID", "default/lun0");
        let partial = ObjectPath::new("CIM_StorageVolume").key("deviceid", "default/lun0");
        assert!(ref_matches(&partial, &full));
        assert!(!ref_matches(&ObjectPath::new(VOLUME), &full));
        assert_eq!(parse_id("IRONLUN:job-12", JOB_PREFIX), Some(12));
        assert_eq!(parse_id("ironlun:JOB-x", JOB_PREFIX), None);
        assert_eq!(parse_id("é", JOB_PREFIX), None);
    }
}

#[cfg(test)]
mod engine_tests {
    use super::*;

    fn provider(tag: &str) -> EngineProvider {
        let dir = std::env::temp_dir().join(format!("cimeng-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let svc = ReplicationService::open(Vec::new(), dir.join("replication.json")).unwrap();
        EngineProvider::new(svc, Vec::new(), "host")
    }

    #[test]
    fn copy_states_answer_from_the_table() {
        let p = provider("caps");
        let params = Params(vec![
            ("ReplicationType".into(), CimValue::Uint16(7)),
            ("Operation".into(), CimValue::Uint16(14)),
        ]);
        let out = p
            .capability_method("GetSupportedCopyStates", &params)
            .ok()
            .unwrap();
        let want: Vec<CimValue> =
            table::supported_copy_states(SyncType::Snapshot, Operation::ResyncReplica)
                .iter()
                .map(|s| CimValue::Uint16(s.cim() as u16))
                .collect();
        assert_eq!(
            out.out_params,
            vec![("SupportedCopyStates".to_string(), CimValue::Array(want))]
        );
    }

    #[test]
    fn bad_references_are_invalid_parameters() {
        let p = provider("refs");
        let e = p
            .element(
                &ObjectPath::new(VOLUME).key("DeviceID", "nopool/x"),
                "SourceElement",
            )
            .err()
            .unwrap();
        assert_eq!(e.code, 5);
        assert!(p
            .element(
                &ObjectPath::new(VOLUME).key("DeviceID", "noslash"),
                "SourceElement"
            )
            .is_err());
        assert!(p
            .job_id(&ObjectPath::new(JOB).key("InstanceID", "x"))
            .is_err());
        let params = Params(vec![("SyncType".into(), CimValue::Uint16(9))]);
        assert_eq!(p.sync_type(&params).err().unwrap().code, 1);
    }
}

//! **Test aid, not the replication engine.** An in-memory [`Provider`]
//! that lets the CIM-XML server be driven end to end (by unit tests and by
//! the real `pywbemcli` / `wbemcli` in `tests/`) before the engine exists.
//! It keeps instances in a list and fakes the methods just enough to
//! produce well-formed answers: CreateElementReplica makes a volume and a
//! StorageSynchronized (or, for SyncType 8 without WaitForCopyState, a
//! completed job with an AffectedJobElement), ModifyReplicaSynchronization
//! Detach (8) / Return To ResourcePool (19) drop the association.
//! No data is copied and no state machine is checked.

use std::sync::Mutex;

use crate::error::CimError;
use crate::provider::{path_of, MethodOutcome, Params, Provider};
use crate::schema::{self, ClassDecl, MethodDecl, Ns};
use crate::value::{CimValue, Instance, ObjectPath};

/// The host system name used in demo instance keys.
pub const SYSTEM_NAME: &str = "host1";

/// In-memory provider (test aid).
#[derive(Default)]
pub struct MemoryProvider {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    instances: Vec<Instance>,
    next_id: u32,
}

fn s(v: &str) -> CimValue {
    CimValue::String(v.to_string())
}
fn u16a(v: &[u16]) -> CimValue {
    CimValue::Array(v.iter().map(|x| CimValue::Uint16(*x)).collect())
}

fn path(class: &str, inst: &Instance) -> ObjectPath {
    let ns = if class.starts_with("CIM_Registered") || class == "CIM_ElementConformsToProfile" {
        Ns::Interop
    } else {
        Ns::Implementation
    };
    let decl = schema::class(ns, class).expect("demo class is declared");
    path_of(decl, inst)
}

/// A demo volume instance.
pub fn volume(device_id: &str, name: &str, blocks: u64) -> Instance {
    Instance::new("MSISCSITARGET_StorageVolume")
        .with("SystemCreationClassName", s("CIM_ComputerSystem"))
        .with("SystemName", s(SYSTEM_NAME))
        .with("CreationClassName", s("MSISCSITARGET_StorageVolume"))
        .with("DeviceID", s(device_id))
        .with("ElementName", s(name))
        .with("BlockSize", CimValue::Uint64(512))
        .with("NumberOfBlocks", CimValue::Uint64(blocks))
        .with("ConsumableBlocks", CimValue::Uint64(blocks))
        .with("OperationalStatus", u16a(&[2]))
}

impl MemoryProvider {
    /// An empty provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider seeded with a replication service, its capabilities, a
    /// pool, two volumes (`vol-1`, `vol-2`) and the interop profile.
    pub fn demo() -> Self {
        let p = Self::new();
        let service = Instance::new("MSISCSITARGET_ReplicationService")
            .with("SystemCreationClassName", s("CIM_ComputerSystem"))
            .with("SystemName", s(SYSTEM_NAME))
            .with("CreationClassName", s("MSISCSITARGET_ReplicationService"))
            .with("Name", s("ReplicationService"))
            .with("ElementName", s("ironlun replication service"))
            .with("OperationalStatus", u16a(&[2]));
        let caps = Instance::new("MSISCSITARGET_ReplicationServiceCapabilities")
            .with("InstanceID", s("ironlun:ReplicationServiceCapabilities"))
            .with("ElementName", s("ironlun replication capabilities"))
            .with("SupportedReplicationTypes", u16a(&[6, 7, 10, 11]))
            .with("SupportedSyncTypes", u16a(&[7, 8]))
            .with("SupportedSynchronousActions", u16a(&[2, 5]))
            .with("SupportedAsynchronousActions", u16a(&[2, 5]))
            .with("SupportedStorageObjects", u16a(&[2]));
        let pool = Instance::new("MSISCSITARGET_StoragePool")
            .with("InstanceID", s("ironlun:pool:default"))
            .with("PoolID", s("default"))
            .with("ElementName", s("default"))
            .with("Primordial", CimValue::Boolean(false))
            .with("TotalManagedSpace", CimValue::Uint64(1 << 30))
            .with("RemainingManagedSpace", CimValue::Uint64(1 << 29))
            .with("OperationalStatus", u16a(&[2]));
        let v1 = volume("vol-1", "base", 2048);
        let v2 = volume("vol-2", "data", 4096);
        let profile = Instance::new("CIM_RegisteredProfile")
            .with("InstanceID", s("ironlun:profile:ReplicationServices"))
            .with("RegisteredOrganization", CimValue::Uint16(11))
            .with("RegisteredName", s("Replication Services"))
            .with("RegisteredVersion", s("1.5.0"))
            .with("AdvertiseTypes", u16a(&[3]));
        let ec = Instance::new("MSISCSITARGET_ElementCapabilities")
            .with(
                "ManagedElement",
                CimValue::Reference(path("MSISCSITARGET_ReplicationService", &service)),
            )
            .with(
                "Capabilities",
                CimValue::Reference(path("MSISCSITARGET_ReplicationServiceCapabilities", &caps)),
            );
        let conforms = Instance::new("CIM_ElementConformsToProfile")
            .with(
                "ConformantStandard",
                CimValue::Reference(path("CIM_RegisteredProfile", &profile)),
            )
            .with(
                "ManagedElement",
                CimValue::Reference(
                    path("MSISCSITARGET_ReplicationService", &service)
                        .with_namespace(schema::IMPLEMENTATION_NAMESPACE),
                ),
            );
        let mut alloc = Vec::new();
        for v in [&v1, &v2] {
            alloc.push(
                Instance::new("MSISCSITARGET_AllocatedFromStoragePool")
                    .with(
                        "Antecedent",
                        CimValue::Reference(path("MSISCSITARGET_StoragePool", &pool)),
                    )
                    .with(
                        "Dependent",
                        CimValue::Reference(path("MSISCSITARGET_StorageVolume", v)),
                    )
                    .with(
                        "SpaceConsumed",
                        v.get("NumberOfBlocks").cloned().unwrap_or(CimValue::Null),
                    ),
            );
        }
        {
            let mut st = p.state.lock().unwrap_or_else(|e| e.into_inner());
            st.instances
                .extend([service, caps, pool, v1, v2, profile, ec, conforms]);
            st.instances.extend(alloc);
        }
        p
    }

    /// Adds an instance.
    pub fn insert(&self, inst: Instance) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .instances
            .push(inst);
    }

    /// All instances of class `name`.
    pub fn instances_of(&self, name: &str) -> Vec<Instance> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .instances
            .iter()
            .filter(|i| i.class_name.eq_ignore_ascii_case(name))
            .cloned()
            .collect()
    }

    fn create_element_replica(&self, params: &Params) -> MethodOutcome {
        let sync_type = params.u64("SyncType").unwrap_or(0);
        if !(6..=8).contains(&sync_type) {
            return MethodOutcome::code(5);
        }
        let Some(src_ref) = params.reference("SourceElement") else {
            return MethodOutcome::code(5);
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Lenient: match the source by DeviceID alone.
        let Some(src) = st
            .instances
            .iter()
            .find(|i| {
                i.class_name == "MSISCSITARGET_StorageVolume"
                    && i.get("DeviceID").and_then(CimValue::as_str) == src_ref.key_str("DeviceID")
            })
            .cloned()
        else {
            return MethodOutcome::code(5);
        };
        st.next_id += 1;
        let n = st.next_id;
        let src_id = src
            .get("DeviceID")
            .and_then(CimValue::as_str)
            .unwrap_or("?")
            .to_string();
        let name = params
            .str("ElementName")
            .map(str::to_string)
            .unwrap_or(format!("replica of {src_id}"));
        let blocks = src
            .get("NumberOfBlocks")
            .and_then(CimValue::as_u64)
            .unwrap_or(0);
        let target = volume(&format!("{src_id}-r{n}"), &name, blocks);
        let tpath = path("MSISCSITARGET_StorageVolume", &target);
        let spath = path("MSISCSITARGET_StorageVolume", &src);
        let sync = Instance::new("MSISCSITARGET_StorageSynchronized")
            .with("SystemElement", CimValue::Reference(spath))
            .with("SyncedElement", CimValue::Reference(tpath.clone()))
            .with("SyncType", CimValue::Uint16(sync_type as u16))
            .with("Mode", CimValue::Uint16(3))
            .with("CopyState", CimValue::Uint16(4))
            .with("RequestedCopyState", CimValue::Uint16(15))
            .with("ProgressStatus", CimValue::Uint16(2))
            .with("SyncMaintained", CimValue::Boolean(false));
        let sync_path = path("MSISCSITARGET_StorageSynchronized", &sync);
        st.instances.push(target);
        st.instances.push(sync);
        if sync_type == 8 && params.get("WaitForCopyState").is_none() {
            let job = Instance::new("MSISCSITARGET_ConcreteJob")
                .with("InstanceID", s(&format!("ironlun:job:{n}")))
                .with("Name", s("CreateElementReplica"))
                .with("MethodName", s("CreateElementReplica"))
                .with("JobState", CimValue::Uint16(7))
                .with("PercentComplete", CimValue::Uint16(100))
                .with("OperationalStatus", u16a(&[2, 17]))
                .with("DeleteOnCompletion", CimValue::Boolean(false))
                .with(
                    "TimeBeforeRemoval",
                    CimValue::DateTime("00000000000500.000000:000".into()),
                );
            let jpath = path("MSISCSITARGET_ConcreteJob", &job);
            st.instances.push(
                Instance::new("MSISCSITARGET_AffectedJobElement")
                    .with("AffectedElement", CimValue::Reference(tpath))
                    .with("AffectingElement", CimValue::Reference(jpath.clone()))
                    .with("ElementEffects", u16a(&[5])),
            );
            st.instances.push(job);
            return MethodOutcome::code(4096).with("Job", CimValue::Reference(jpath));
        }
        MethodOutcome::code(0)
            .with("TargetElement", CimValue::Reference(tpath))
            .with("Synchronization", CimValue::Reference(sync_path))
    }

    fn modify_replica_synchronization(&self, params: &Params) -> MethodOutcome {
        let op = params.u64("Operation").unwrap_or(0);
        let Some(sync_ref) = params.reference("Synchronization") else {
            return MethodOutcome::code(5);
        };
        let synced_id = match sync_ref.get_key("SyncedElement") {
            Some(crate::value::KeyValue::Reference(p)) => p.key_str("DeviceID").map(str::to_string),
            _ => None,
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let pos = st.instances.iter().position(|i| {
            i.class_name == "MSISCSITARGET_StorageSynchronized"
                && i.get("SyncedElement")
                    .and_then(CimValue::as_reference)
                    .and_then(|p| p.key_str("DeviceID"))
                    .map(str::to_string)
                    == synced_id
        });
        let Some(pos) = pos else {
            return MethodOutcome::code(5);
        };
        match op {
            8 => {
                st.instances.remove(pos);
                MethodOutcome::code(0)
            }
            19 => {
                st.instances.remove(pos);
                st.instances.retain(|i| {
                    !(i.class_name == "MSISCSITARGET_StorageVolume"
                        && i.get("DeviceID").and_then(CimValue::as_str) == synced_id.as_deref())
                });
                MethodOutcome::code(0)
            }
            _ => MethodOutcome::code(5),
        }
    }
}

impl Provider for MemoryProvider {
    fn enumerate_instances(
        &self,
        _namespace: &str,
        class: &'static ClassDecl,
    ) -> Result<Vec<Instance>, CimError> {
        Ok(self.instances_of(class.name))
    }

    fn invoke_method(
        &self,
        _namespace: &str,
        class: &'static ClassDecl,
        _target: &ObjectPath,
        method: &'static MethodDecl,
        params: &Params,
    ) -> Result<MethodOutcome, CimError> {
        Ok(match (class.name, method.name) {
            (_, "CreateElementReplica") => self.create_element_replica(params),
            (_, "ModifyReplicaSynchronization") => self.modify_replica_synchronization(params),
            (_, "RequestStateChange") => MethodOutcome::code(4097),
            (_, "GetErrors") => MethodOutcome::code(0).with("Errors", CimValue::Array(Vec::new())),
            (_, "GetSupportedOperations") => {
                MethodOutcome::code(0).with("SupportedOperations", u16a(&[4, 7, 8, 14, 15, 19]))
            }
            (_, "ConvertSyncTypeToReplicationType") => MethodOutcome {
                return_value: CimValue::Uint16(match params.u64("SyncType") {
                    Some(6) => 3,
                    Some(7) => 7,
                    Some(8) => 11,
                    _ => 0,
                }),
                out_params: Vec::new(),
            },
            _ => MethodOutcome::code(1),
        })
    }
}

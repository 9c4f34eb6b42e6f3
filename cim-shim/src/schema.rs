//! The class schema, as data: every class the shim serves, with its
//! superclass chain, key and non-key properties and method declarations
//! (parameters, direction, types, `EmbeddedInstance` qualifiers).
//!
//! This table is the one source of class declarations: GetClass /
//! EnumerateClasses are encoded from it, untyped method parameters (wbemcli
//! sends no PARAMTYPE) are typed from it, and instance properties are typed
//! from it when encoded. Sources: DMTF CIM 2.41 (Experimental) and the
//! Microsoft iSCSI Target provider documentation, as summarised in
//! `shared/reference/cim/model.md`.

use crate::value::CimType::{self, *};

/// The Windows iSCSI Target namespace, where the storage classes live.
pub const IMPLEMENTATION_NAMESPACE: &str = "root/cimv2/storage/iscsitarget";
/// The interop namespace names (both spellings are served), holding the
/// registered profile.
pub const INTEROP_NAMESPACES: &[&str] = &["interop", "root/interop"];

/// Which namespace a class is served in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    Implementation,
    Interop,
}

/// Parameter direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
    InOut,
}

impl Dir {
    pub fn is_in(self) -> bool {
        matches!(self, Dir::In | Dir::InOut)
    }
    pub fn is_out(self) -> bool {
        matches!(self, Dir::Out | Dir::InOut)
    }
}

#[derive(Debug)]
pub struct PropDecl {
    pub name: &'static str,
    pub ty: CimType,
    pub array: bool,
    pub key: bool,
    /// For `reference` properties: the referenced class.
    pub ref_class: Option<&'static str>,
    /// `EmbeddedInstance` qualifier (string properties holding an instance).
    pub embedded_instance: Option<&'static str>,
}

#[derive(Debug)]
pub struct ParamDecl {
    pub name: &'static str,
    pub ty: CimType,
    pub array: bool,
    pub dir: Dir,
    pub required: bool,
    pub ref_class: Option<&'static str>,
    pub embedded_instance: Option<&'static str>,
}

#[derive(Debug)]
pub struct MethodDecl {
    pub name: &'static str,
    pub ret: CimType,
    pub params: &'static [ParamDecl],
}

impl MethodDecl {
    /// Parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&'static ParamDecl> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug)]
pub struct ClassDecl {
    pub name: &'static str,
    pub superclass: Option<&'static str>,
    /// Further ancestors above `superclass`, nearest first.
    pub ancestors: &'static [&'static str],
    pub association: bool,
    pub ns: Ns,
    pub properties: &'static [PropDecl],
    pub methods: &'static [MethodDecl],
}

impl ClassDecl {
    pub fn property(&self, name: &str) -> Option<&'static PropDecl> {
        self.properties
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
    pub fn method(&self, name: &str) -> Option<&'static MethodDecl> {
        self.methods
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
    }
    pub fn keys(&self) -> impl Iterator<Item = &'static PropDecl> {
        self.properties.iter().filter(|p| p.key)
    }
    /// True if `name` is this class or one of its ancestors.
    pub fn is_a(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
            || self
                .superclass
                .is_some_and(|s| s.eq_ignore_ascii_case(name))
            || self.ancestors.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
    /// Reference properties (the roles of an association).
    pub fn references(&self) -> impl Iterator<Item = &'static PropDecl> {
        self.properties.iter().filter(|p| p.ty == Reference)
    }
}

// ---- compact constructors for the table ----------------------------------

const fn key(name: &'static str, ty: CimType) -> PropDecl {
    PropDecl {
        name,
        ty,
        array: false,
        key: true,
        ref_class: None,
        embedded_instance: None,
    }
}
const fn prop(name: &'static str, ty: CimType) -> PropDecl {
    PropDecl {
        name,
        ty,
        array: false,
        key: false,
        ref_class: None,
        embedded_instance: None,
    }
}
const fn arr(name: &'static str, ty: CimType) -> PropDecl {
    PropDecl {
        name,
        ty,
        array: true,
        key: false,
        ref_class: None,
        embedded_instance: None,
    }
}
const fn keyref(name: &'static str, class: &'static str) -> PropDecl {
    PropDecl {
        name,
        ty: Reference,
        array: false,
        key: true,
        ref_class: Some(class),
        embedded_instance: None,
    }
}
const fn inp(name: &'static str, ty: CimType) -> ParamDecl {
    ParamDecl {
        name,
        ty,
        array: false,
        dir: Dir::In,
        required: false,
        ref_class: None,
        embedded_instance: None,
    }
}
const fn req(name: &'static str, ty: CimType) -> ParamDecl {
    ParamDecl {
        name,
        ty,
        array: false,
        dir: Dir::In,
        required: true,
        ref_class: None,
        embedded_instance: None,
    }
}
const fn out_arr(name: &'static str, ty: CimType) -> ParamDecl {
    ParamDecl {
        name,
        ty,
        array: true,
        dir: Dir::Out,
        required: false,
        ref_class: None,
        embedded_instance: None,
    }
}
const fn in_ref(name: &'static str, class: &'static str) -> ParamDecl {
    ParamDecl {
        name,
        ty: Reference,
        array: false,
        dir: Dir::In,
        required: false,
        ref_class: Some(class),
        embedded_instance: None,
    }
}
const fn req_ref(name: &'static str, class: &'static str) -> ParamDecl {
    ParamDecl {
        name,
        ty: Reference,
        array: false,
        dir: Dir::In,
        required: true,
        ref_class: Some(class),
        embedded_instance: None,
    }
}
const fn in_refarr(name: &'static str, class: &'static str) -> ParamDecl {
    ParamDecl {
        name,
        ty: Reference,
        array: true,
        dir: Dir::In,
        required: false,
        ref_class: Some(class),
        embedded_instance: None,
    }
}
const fn out_ref(name: &'static str, class: &'static str) -> ParamDecl {
    ParamDecl {
        name,
        ty: Reference,
        array: false,
        dir: Dir::Out,
        required: false,
        ref_class: Some(class),
        embedded_instance: None,
    }
}
const fn inout_ref(name: &'static str, class: &'static str) -> ParamDecl {
    ParamDecl {
        name,
        ty: Reference,
        array: false,
        dir: Dir::InOut,
        required: false,
        ref_class: Some(class),
        embedded_instance: None,
    }
}
const fn in_embedded(name: &'static str, class: &'static str) -> ParamDecl {
    ParamDecl {
        name,
        ty: String,
        array: false,
        dir: Dir::In,
        required: false,
        ref_class: None,
        embedded_instance: Some(class),
    }
}
const fn out_embedded(name: &'static str, class: &'static str) -> ParamDecl {
    ParamDecl {
        name,
        ty: String,
        array: false,
        dir: Dir::Out,
        required: false,
        ref_class: None,
        embedded_instance: Some(class),
    }
}
const fn out_embedded_arr(name: &'static str, class: &'static str) -> ParamDecl {
    ParamDecl {
        name,
        ty: String,
        array: true,
        dir: Dir::Out,
        required: false,
        ref_class: None,
        embedded_instance: Some(class),
    }
}

// ---- property groups --------------------------------------------------------

/// CIM_Synchronized / CIM_StorageSynchronized non-key properties.
macro_rules! synchronized_props {
    ($($extra:expr),* $(,)?) => {
        &[
            keyref("SystemElement", "CIM_ManagedElement"),
            keyref("SyncedElement", "CIM_ManagedElement"),
            prop("SyncType", Uint16),
            prop("Mode", Uint16),
            prop("CopyState", Uint16),
            prop("RequestedCopyState", Uint16),
            prop("ProgressStatus", Uint16),
            prop("PercentSynced", Uint16),
            prop("SyncMaintained", Boolean),
            prop("WhenSynced", DateTime),
            prop("WhenEstablished", DateTime),
            prop("WhenActivated", DateTime),
            prop("WhenDeactivated", DateTime),
            prop("WhenSuspended", DateTime),
            prop("WhenSynchronized", DateTime),
            prop("CopyRecoveryMode", Uint16),
            prop("CopyPriority", Uint16),
            prop("CopyMethodology", Uint16),
            prop("ReplicaType", Uint16),
            prop("UndiscoveredElement", Uint16),
            prop("ReadOnly", Boolean),
            $($extra,)*
        ]
    };
}

const REPLICATION_SETTING_DATA: &str = "CIM_ReplicationSettingData";

const CREATE_ELEMENT_REPLICA: MethodDecl = MethodDecl {
    name: "CreateElementReplica",
    ret: Uint32,
    params: &[
        inp("ElementName", String),
        req("SyncType", Uint16),
        inp("Mode", Uint16),
        req_ref("SourceElement", "CIM_LogicalElement"),
        in_ref("SourceAccessPoint", "CIM_ServiceAccessPoint"),
        inout_ref("TargetElement", "CIM_LogicalElement"),
        in_ref("TargetAccessPoint", "CIM_ServiceAccessPoint"),
        in_embedded("ReplicationSettingData", REPLICATION_SETTING_DATA),
        out_ref("Job", "CIM_ConcreteJob"),
        out_ref("Synchronization", "CIM_Synchronized"),
        in_ref("TargetSettingGoal", "CIM_SettingData"),
        in_ref("TargetPool", "CIM_ResourcePool"),
        inp("WaitForCopyState", Uint16),
        in_ref("ConnectivityCollection", "CIM_ConnectivityCollection"),
        in_refarr("Collections", "CIM_Collection"),
    ],
};

const CREATE_GROUP_REPLICA: MethodDecl = MethodDecl {
    name: "CreateGroupReplica",
    ret: Uint32,
    params: &[
        inp("RelationshipName", String),
        req("SyncType", Uint16),
        inp("Mode", Uint16),
        in_ref("SourceGroup", "CIM_ReplicationGroup"),
        in_ref("SourceElement", "CIM_LogicalElement"),
        in_ref("SourceAccessPoint", "CIM_ServiceAccessPoint"),
        inout_ref("TargetGroup", "CIM_ReplicationGroup"),
        inp("TargetElementCount", Uint64),
        in_ref("TargetAccessPoint", "CIM_ServiceAccessPoint"),
        inp("Consistency", Uint16),
        in_embedded("ReplicationSettingData", REPLICATION_SETTING_DATA),
        out_ref("Job", "CIM_ConcreteJob"),
        out_ref("Synchronization", "CIM_Synchronized"),
        in_ref("TargetSettingGoal", "CIM_SettingData"),
        in_ref("TargetPool", "CIM_ResourcePool"),
        inp("WaitForCopyState", Uint16),
    ],
};

const CREATE_SYNCHRONIZATION_ASPECT: MethodDecl = MethodDecl {
    name: "CreateSynchronizationAspect",
    ret: Uint32,
    params: &[
        inp("Name", String),
        req("SyncType", Uint16),
        inp("Mode", Uint16),
        in_ref("SourceGroup", "CIM_ReplicationGroup"),
        in_ref("SourceElement", "CIM_ManagedElement"),
        in_ref("SourceAccessPoint", "CIM_ServiceAccessPoint"),
        inp("Consistency", Uint16),
        in_embedded("ReplicationSettingData", REPLICATION_SETTING_DATA),
        out_ref("Job", "CIM_ConcreteJob"),
        out_ref("SettingsState", "CIM_SettingsDefineState"),
    ],
};

const MODIFY_REPLICA_SYNCHRONIZATION: MethodDecl = MethodDecl {
    name: "ModifyReplicaSynchronization",
    ret: Uint32,
    params: &[
        req("Operation", Uint16),
        req_ref("Synchronization", "CIM_Synchronized"),
        in_embedded("ReplicationSettingData", REPLICATION_SETTING_DATA),
        in_refarr("SyncPair", "CIM_Synchronized"),
        out_ref("Job", "CIM_ConcreteJob"),
        out_ref("SettingsState", "CIM_SettingsDefineState"),
        inp("Force", Boolean),
        inp("WaitForCopyState", Uint16),
        out_ref("UpdatedSynchronization", "CIM_Synchronized"),
    ],
};

const CREATE_GROUP: MethodDecl = MethodDecl {
    name: "CreateGroup",
    ret: Uint32,
    params: &[
        inp("GroupName", String),
        in_refarr("Members", "CIM_ManagedElement"),
        inp("Persistent", Boolean),
        inp("DeleteOnEmptyElement", Boolean),
        inp("DeleteOnUnassociated", Boolean),
        in_embedded("ReplicationSettingData", REPLICATION_SETTING_DATA),
        out_ref("ReplicationGroup", "CIM_ReplicationGroup"),
    ],
};

const DELETE_GROUP: MethodDecl = MethodDecl {
    name: "DeleteGroup",
    ret: Uint32,
    params: &[
        req_ref("ReplicationGroup", "CIM_ReplicationGroup"),
        inp("RemoveElements", Boolean),
    ],
};

const MODIFY_SETTINGS_DEFINE_STATE: MethodDecl = MethodDecl {
    name: "ModifySettingsDefineState",
    ret: Uint32,
    params: &[
        req("Operation", Uint16),
        req_ref("SettingsState", "CIM_SettingsDefineState"),
        in_ref("TargetElement", "CIM_LogicalElement"),
        inout_ref("TargetGroup", "CIM_ReplicationGroup"),
        in_ref("TargetSettingGoal", "CIM_SettingData"),
        in_ref("TargetPool", "CIM_ResourcePool"),
        out_ref("Job", "CIM_ConcreteJob"),
        out_ref("Synchronization", "CIM_Synchronized"),
        inp("Force", Boolean),
        inp("WaitForCopyState", Uint16),
    ],
};

/// Every class the shim serves.
pub static CLASSES: &[ClassDecl] = &[
    ClassDecl {
        name: "MSISCSITARGET_StorageVolume",
        superclass: Some("CIM_StorageVolume"),
        ancestors: &[
            "CIM_StorageExtent",
            "CIM_StorageVolume",
            "CIM_LogicalDevice",
            "CIM_EnabledLogicalElement",
            "CIM_LogicalElement",
            "CIM_ManagedSystemElement",
            "CIM_ManagedElement",
        ],
        association: false,
        ns: Ns::Implementation,
        properties: &[
            key("SystemCreationClassName", String),
            key("SystemName", String),
            key("CreationClassName", String),
            key("DeviceID", String),
            prop("ElementName", String),
            prop("Name", String),
            prop("NameFormat", Uint16),
            prop("BlockSize", Uint64),
            prop("NumberOfBlocks", Uint64),
            prop("ConsumableBlocks", Uint64),
            arr("OperationalStatus", Uint16),
            prop("HealthState", Uint16),
            prop("EnabledState", Uint16),
            prop("Primordial", Boolean),
            prop("IsBasedOnUnderlyingRedundancy", Boolean),
            prop("NoSinglePointOfFailure", Boolean),
            prop("MSWTD", Uint32),
            prop("MSType", Sint32),
            prop("MSDevicePath", String),
            prop("MSParentPath", String),
            prop("MSParentWTD", Uint32),
        ],
        methods: &[],
    },
    ClassDecl {
        name: "MSISCSITARGET_ReplicationService",
        superclass: Some("CIM_ReplicationService"),
        ancestors: &[
            "CIM_Service",
            "CIM_EnabledLogicalElement",
            "CIM_LogicalElement",
            "CIM_ManagedSystemElement",
            "CIM_ManagedElement",
        ],
        association: false,
        ns: Ns::Implementation,
        properties: &[
            key("SystemCreationClassName", String),
            key("SystemName", String),
            key("CreationClassName", String),
            key("Name", String),
            prop("ElementName", String),
            arr("OperationalStatus", Uint16),
            prop("EnabledState", Uint16),
            prop("Started", Boolean),
        ],
        methods: &[
            CREATE_ELEMENT_REPLICA,
            CREATE_GROUP_REPLICA,
            CREATE_SYNCHRONIZATION_ASPECT,
            MODIFY_REPLICA_SYNCHRONIZATION,
            MODIFY_SETTINGS_DEFINE_STATE,
            CREATE_GROUP,
            DELETE_GROUP,
        ],
    },
    ClassDecl {
        name: "MSISCSITARGET_StorageSynchronized",
        superclass: Some("CIM_StorageSynchronized"),
        ancestors: &["CIM_Synchronized"],
        association: true,
        ns: Ns::Implementation,
        properties: synchronized_props!(prop("SyncState", Uint16), prop("CopyType", Uint16)),
        methods: &[],
    },
    ClassDecl {
        name: "MSISCSITARGET_ConcreteJob",
        superclass: Some("CIM_ConcreteJob"),
        ancestors: &[
            "CIM_Job",
            "CIM_LogicalElement",
            "CIM_ManagedSystemElement",
            "CIM_ManagedElement",
        ],
        association: false,
        ns: Ns::Implementation,
        properties: &[
            key("InstanceID", String),
            prop("Name", String),
            prop("ElementName", String),
            prop("Description", String),
            prop("JobState", Uint16),
            prop("JobStatus", String),
            prop("PercentComplete", Uint16),
            arr("OperationalStatus", Uint16),
            prop("ErrorCode", Uint16),
            prop("ErrorDescription", String),
            prop("TimeSubmitted", DateTime),
            prop("StartTime", DateTime),
            prop("ElapsedTime", DateTime),
            prop("TimeOfLastStateChange", DateTime),
            prop("DeleteOnCompletion", Boolean),
            prop("TimeBeforeRemoval", DateTime),
            prop("MethodName", String),
            prop("RecoveryAction", Uint16),
        ],
        methods: &[
            MethodDecl {
                name: "RequestStateChange",
                ret: Uint32,
                params: &[
                    req("RequestedState", Uint16),
                    inp("TimeoutPeriod", DateTime),
                ],
            },
            MethodDecl {
                name: "GetErrors",
                ret: Uint32,
                params: &[out_embedded_arr("Errors", "CIM_Error")],
            },
        ],
    },
    ClassDecl {
        name: "MSISCSITARGET_ReplicationServiceCapabilities",
        superclass: Some("CIM_ReplicationServiceCapabilities"),
        ancestors: &["CIM_Capabilities", "CIM_ManagedElement"],
        association: false,
        ns: Ns::Implementation,
        properties: &[
            key("InstanceID", String),
            prop("ElementName", String),
            arr("SupportedReplicationTypes", Uint16),
            arr("SupportedSyncTypes", Uint16),
            arr("SupportedSynchronousActions", Uint16),
            arr("SupportedAsynchronousActions", Uint16),
            arr("SupportedStorageObjects", Uint16),
            arr("SupportedSpecializedElements", Uint16),
            arr("SupportedModifyOperations", Uint16),
        ],
        methods: &[
            MethodDecl {
                name: "GetSupportedOperations",
                ret: Uint32,
                params: &[
                    req("ReplicationType", Uint16),
                    inp("CopyState", Uint16),
                    out_arr("SupportedOperations", Uint16),
                ],
            },
            MethodDecl {
                name: "GetSupportedCopyStates",
                ret: Uint32,
                params: &[
                    req("ReplicationType", Uint16),
                    inp("Operation", Uint16),
                    out_arr("SupportedCopyStates", Uint16),
                    out_arr("HostAccessible", Boolean),
                ],
            },
            MethodDecl {
                name: "GetSupportedWaitForCopyStates",
                ret: Uint32,
                params: &[
                    req("ReplicationType", Uint16),
                    inp("MethodName", Uint16),
                    inp("Operation", Uint16),
                    out_arr("SupportedCopyStates", Uint16),
                ],
            },
            MethodDecl {
                name: "GetSupportedFeatures",
                ret: Uint32,
                params: &[req("ReplicationType", Uint16), out_arr("Features", Uint16)],
            },
            MethodDecl {
                name: "GetSupportedConsistency",
                ret: Uint32,
                params: &[
                    req("ReplicationType", Uint16),
                    out_arr("SupportedConsistency", Uint16),
                ],
            },
            MethodDecl {
                name: "GetDefaultReplicationSettingData",
                ret: Uint32,
                params: &[
                    req("ReplicationType", Uint16),
                    out_embedded("DefaultInstance", REPLICATION_SETTING_DATA),
                ],
            },
            MethodDecl {
                name: "ConvertSyncTypeToReplicationType",
                ret: Uint16,
                params: &[
                    req("SyncType", Uint16),
                    inp("Mode", Uint16),
                    inp("LocalOrRemote", Uint16),
                ],
            },
        ],
    },
    ClassDecl {
        name: "MSISCSITARGET_AffectedJobElement",
        superclass: Some("CIM_AffectedJobElement"),
        ancestors: &[],
        association: true,
        ns: Ns::Implementation,
        properties: &[
            keyref("AffectedElement", "CIM_ManagedElement"),
            keyref("AffectingElement", "CIM_Job"),
            arr("ElementEffects", Uint16),
        ],
        methods: &[],
    },
    ClassDecl {
        name: "CIM_SynchronizationAspect",
        superclass: Some("CIM_SettingData"),
        ancestors: &["CIM_ManagedElement"],
        association: false,
        ns: Ns::Implementation,
        properties: &[
            key("InstanceID", String),
            prop("ElementName", String),
            prop("SyncType", Uint16),
            prop("ConsistencyEnabled", Boolean),
            prop("ConsistencyType", Uint16),
            prop("CopyStatus", Uint16),
            prop("CopyMethodology", Uint16),
            prop("WhenPointInTime", DateTime),
            prop("SourceElement", String),
            prop("AutoDelete", Boolean),
            prop("TimeBeforeRemoval", DateTime),
            prop("SyncState", Uint16),
        ],
        methods: &[],
    },
    ClassDecl {
        name: "CIM_SettingsDefineState",
        superclass: None,
        ancestors: &[],
        association: true,
        ns: Ns::Implementation,
        properties: &[
            keyref("ManagedElement", "CIM_ManagedElement"),
            keyref("SettingData", "CIM_SettingData"),
        ],
        methods: &[],
    },
    ClassDecl {
        name: "CIM_ReplicationGroup",
        superclass: Some("CIM_SystemSpecificCollection"),
        ancestors: &["CIM_Collection", "CIM_ManagedElement"],
        association: false,
        ns: Ns::Implementation,
        properties: &[
            key("InstanceID", String),
            prop("ElementName", String),
            prop("Persistent", Boolean),
            prop("DeleteOnEmptyElement", Boolean),
            prop("DeleteOnUnassociated", Boolean),
            prop("ConsistentPointInTime", Boolean),
            prop("ReservedAs", Uint16),
            arr("SupportedSyncTypes", Uint16),
        ],
        methods: &[],
    },
    ClassDecl {
        name: "CIM_GroupSynchronized",
        superclass: Some("CIM_Synchronized"),
        ancestors: &[],
        association: true,
        ns: Ns::Implementation,
        properties: synchronized_props!(),
        methods: &[],
    },
    ClassDecl {
        name: "CIM_OrderedMemberOfCollection",
        superclass: Some("CIM_MemberOfCollection"),
        ancestors: &[],
        association: true,
        ns: Ns::Implementation,
        properties: &[
            keyref("Collection", "CIM_Collection"),
            keyref("Member", "CIM_ManagedElement"),
            prop("AssignedSequence", Uint64),
        ],
        methods: &[],
    },
    ClassDecl {
        name: "MSISCSITARGET_StoragePool",
        superclass: Some("CIM_StoragePool"),
        ancestors: &[
            "CIM_ResourcePool",
            "CIM_LogicalElement",
            "CIM_ManagedSystemElement",
            "CIM_ManagedElement",
        ],
        association: false,
        ns: Ns::Implementation,
        properties: &[
            key("InstanceID", String),
            prop("PoolID", String),
            prop("ElementName", String),
            prop("Primordial", Boolean),
            prop("TotalManagedSpace", Uint64),
            prop("RemainingManagedSpace", Uint64),
            arr("OperationalStatus", Uint16),
        ],
        methods: &[],
    },
    ClassDecl {
        name: "MSISCSITARGET_AllocatedFromStoragePool",
        superclass: Some("CIM_AllocatedFromStoragePool"),
        ancestors: &["CIM_Dependency"],
        association: true,
        ns: Ns::Implementation,
        properties: &[
            keyref("Antecedent", "CIM_StoragePool"),
            keyref("Dependent", "CIM_LogicalElement"),
            prop("SpaceConsumed", Uint64),
        ],
        methods: &[],
    },
    ClassDecl {
        name: "MSISCSITARGET_ElementCapabilities",
        superclass: Some("CIM_ElementCapabilities"),
        ancestors: &[],
        association: true,
        ns: Ns::Implementation,
        properties: &[
            keyref("ManagedElement", "CIM_ManagedElement"),
            keyref("Capabilities", "CIM_Capabilities"),
            arr("Characteristics", Uint16),
        ],
        methods: &[],
    },
    ClassDecl {
        name: "CIM_RegisteredProfile",
        superclass: Some("CIM_RegisteredSpecification"),
        ancestors: &["CIM_ManagedElement"],
        association: false,
        ns: Ns::Interop,
        properties: &[
            key("InstanceID", String),
            prop("RegisteredOrganization", Uint16),
            prop("OtherRegisteredOrganization", String),
            prop("RegisteredName", String),
            prop("RegisteredVersion", String),
            arr("AdvertiseTypes", Uint16),
            arr("AdvertiseTypeDescriptions", String),
        ],
        methods: &[],
    },
    ClassDecl {
        name: "CIM_ElementConformsToProfile",
        superclass: None,
        ancestors: &[],
        association: true,
        ns: Ns::Interop,
        properties: &[
            keyref("ConformantStandard", "CIM_RegisteredProfile"),
            keyref("ManagedElement", "CIM_ManagedElement"),
        ],
        methods: &[],
    },
];

/// Normalises a namespace name for comparison: `/`-separated, no leading
/// or trailing slashes, `\` accepted (WMI spelling), case-folded.
pub fn normalize_namespace(ns: &str) -> std::string::String {
    ns.replace('\\', "/").trim_matches('/').to_ascii_lowercase()
}

/// Which namespace `ns` names, if the shim serves it.
pub fn namespace_kind(ns: &str) -> Option<Ns> {
    let n = normalize_namespace(ns);
    if n == IMPLEMENTATION_NAMESPACE {
        Some(Ns::Implementation)
    } else if INTEROP_NAMESPACES.contains(&n.as_str()) {
        Some(Ns::Interop)
    } else {
        None
    }
}

/// Classes served in namespace kind `ns`.
pub fn classes_in(ns: Ns) -> impl Iterator<Item = &'static ClassDecl> {
    CLASSES.iter().filter(move |c| c.ns == ns)
}

/// The declared class `name` in `ns` (case-insensitive).
pub fn class(ns: Ns, name: &str) -> Option<&'static ClassDecl> {
    classes_in(ns).find(|c| c.name.eq_ignore_ascii_case(name))
}

/// Declared classes in `ns` that are `name` or derive from it.
pub fn classes_derived_from(ns: Ns, name: &str) -> Vec<&'static ClassDecl> {
    classes_in(ns).filter(|c| c.is_a(name)).collect()
}

/// True if `name` is a declared class in `ns` or an ancestor of one.
pub fn known_class_name(ns: Ns, name: &str) -> bool {
    classes_in(ns).any(|c| c.is_a(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for c in CLASSES {
            assert!(c.keys().count() > 0, "{} has no keys", c.name);
            assert_eq!(c.association, c.references().count() >= 2, "{}", c.name);
            for p in c.properties {
                assert_eq!(
                    p.ty == Reference,
                    p.ref_class.is_some(),
                    "{}.{}",
                    c.name,
                    p.name
                );
            }
            for m in c.methods {
                for p in m.params {
                    assert_eq!(
                        p.ty == Reference,
                        p.ref_class.is_some(),
                        "{}.{}",
                        m.name,
                        p.name
                    );
                }
            }
        }
        let rs = class(Ns::Implementation, "msiscsitarget_replicationservice").unwrap();
        for m in [
            "CreateElementReplica",
            "CreateGroupReplica",
            "CreateSynchronizationAspect",
            "ModifyReplicaSynchronization",
        ] {
            assert!(rs.method(m).is_some(), "{m}");
        }
        assert!(known_class_name(Ns::Implementation, "CIM_StorageVolume"));
        assert_eq!(
            namespace_kind("Root\\CIMv2\\Storage\\iScsiTarget"),
            Some(Ns::Implementation)
        );
    }
}

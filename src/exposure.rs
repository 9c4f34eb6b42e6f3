//! Replica exposure: a replica the replication engine makes (the target of
//! a Snapshot, Clone or Mirror synchronization) of a volume a target
//! serves becomes a LUN of that same target at once, under the next free
//! LUN number (a snapshot read-only); when the replica is deleted (Return
//! To ResourcePool) or its point in time is discarded (Deactivate) the LUN
//! goes away. Every change raises REPORTED LUNS DATA HAS CHANGED for the
//! nexuses of the target.
//!
//! The LUN numbers given out are kept in `DATA_DIR/replica-luns.json`, so
//! a replica keeps its number across restarts and while its point in time
//! is re-taken. An assignment ends when its element no longer exists and
//! no synchronization names it any more. A replica whose relationship
//! ends (Detach, Dissolve) but whose volume or snapshot stays keeps its
//! LUN: it is still the user's data.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ironlun_cow::BlockDevice;
use ironlun_replication::{ElementObserver, ElementRef, ReplicationService};
use ironlun_target::scsi::{LogicalUnit, LuIdentity, LuOptions, LunMap};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// The highest LUN number a target can have (flat space addressing).
const MAX_LUN: u64 = 16383;

/// A target whose LUN map replicas are added to.
pub struct ServedTarget {
    pub iqn: String,
    pub luns: Arc<LunMap>,
    /// The pool elements its configured LUNs serve.
    pub elements: Vec<ElementRef>,
    /// The LUN numbers the configuration uses.
    pub configured: Vec<u64>,
}

/// One replica's LUN, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Assignment {
    target: String,
    lun: u64,
    element: ElementRef,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AssignmentFile {
    assignments: Vec<Assignment>,
}

/// What is mapped now: per element, its LUN and the identity of the pool
/// object behind it (a re-taken snapshot is a new object).
struct Live {
    assignments: Vec<Assignment>,
    served: HashMap<ElementRef, ObjectId>,
}

/// A pool object's identity: volumes by id, snapshots by generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjectId {
    Volume(u64),
    Snapshot(u64),
}

/// Adds and removes replica LUNs as the engine reports changes.
pub struct ReplicaExposure {
    engine: Arc<ReplicationService>,
    targets: Vec<ServedTarget>,
    file: PathBuf,
    state_root: PathBuf,
    identity: fn(&str) -> LuIdentity,
    /// Serializes reconciliations (taken before the engine's lock, never
    /// under it).
    reconcile: Mutex<()>,
    /// Taken under the engine's lock by `releasing`; never held while
    /// calling the engine.
    live: Mutex<Live>,
}

impl ReplicaExposure {
    /// Loads the assignments kept in `data_dir`, maps every replica that
    /// exists, and returns the exposure (register it with
    /// [`ReplicationService::set_observer`]).
    pub fn start(
        engine: Arc<ReplicationService>,
        targets: Vec<ServedTarget>,
        data_dir: &Path,
        identity: fn(&str) -> LuIdentity,
    ) -> anyhow::Result<Arc<ReplicaExposure>> {
        let file = data_dir.join("replica-luns.json");
        let saved: AssignmentFile = ironlun_replication::persist::load(&file)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .unwrap_or_default();
        let mut assignments: Vec<Assignment> = Vec::new();
        for a in saved.assignments {
            let Some(t) = targets.iter().find(|t| t.iqn == a.target) else {
                warn!(target = %a.target, element = %a.element,
                    "replica LUN: the target is no longer configured; the replica is not exposed");
                continue;
            };
            if t.configured.contains(&a.lun)
                || assignments
                    .iter()
                    .any(|b| b.target == a.target && b.lun == a.lun)
            {
                warn!(target = %a.target, lun = a.lun, element = %a.element,
                    "replica LUN: the number is now configured for another LUN; the replica gets a new number");
                continue;
            }
            if t.elements.contains(&a.element) {
                continue; // configured as a LUN now
            }
            assignments.push(a);
        }
        let exposure = Arc::new(ReplicaExposure {
            engine,
            targets,
            file,
            state_root: data_dir.join("state"),
            identity,
            reconcile: Mutex::new(()),
            live: Mutex::new(Live {
                assignments,
                served: HashMap::new(),
            }),
        });
        exposure.reconcile(false);
        Ok(exposure)
    }

    fn target(&self, iqn: &str) -> Option<&ServedTarget> {
        self.targets.iter().find(|t| t.iqn == iqn)
    }

    /// The pool object behind `element` now, if it exists.
    fn object(&self, element: &ElementRef) -> Option<ObjectId> {
        let pool = self.engine.pool(&element.pool).ok()?;
        if let Ok(v) = pool.volume(&element.name) {
            return Some(ObjectId::Volume(v.id()));
        }
        pool.snapshot(&element.name)
            .ok()
            .map(|s| ObjectId::Snapshot(s.generation()))
    }

    /// Brings the LUN maps in line with the engine: new replicas get a LUN,
    /// re-created ones a fresh unit under the same number, deleted ones
    /// lose theirs. `notify`: raise REPORTED LUNS DATA HAS CHANGED on the
    /// targets that changed (not at start, before any session).
    fn reconcile(&self, notify: bool) {
        let _one = self.reconcile.lock();
        let syncs = self.engine.synchronizations();
        // Which target serves each element: configured ones first, then
        // the replicas already exposed (a replica of a replica).
        let mut server_of: BTreeMap<ElementRef, String> = BTreeMap::new();
        for t in &self.targets {
            for e in &t.elements {
                server_of.entry(e.clone()).or_insert_with(|| t.iqn.clone());
            }
        }
        let mut assignments = self.live.lock().assignments.clone();
        for a in &assignments {
            server_of
                .entry(a.element.clone())
                .or_insert_with(|| a.target.clone());
        }
        let mut named: Vec<ElementRef> = Vec::new();
        for s in &syncs {
            named.push(s.target.clone());
            if server_of.contains_key(&s.target) {
                continue;
            }
            let Some(iqn) = server_of.get(&s.source).cloned() else {
                continue;
            };
            let Some(t) = self.target(&iqn) else { continue };
            let used: Vec<u64> = assignments
                .iter()
                .filter(|a| a.target == iqn)
                .map(|a| a.lun)
                .chain(t.configured.iter().copied())
                .collect();
            let Some(lun) = (0..=MAX_LUN).find(|n| !used.contains(n)) else {
                warn!(target = %iqn, element = %s.target, "replica LUN: no free LUN number");
                continue;
            };
            assignments.push(Assignment {
                target: iqn.clone(),
                lun,
                element: s.target.clone(),
            });
            server_of.insert(s.target.clone(), iqn);
        }
        // Objects as they are now (asked before taking `live`: the engine
        // and pools are never called under it).
        let objects: Vec<Option<ObjectId>> = assignments
            .iter()
            .map(|a| self.object(&a.element))
            .collect();
        let mut ended: Vec<Assignment> = Vec::new();
        let mut keep: Vec<(Assignment, Option<ObjectId>)> = Vec::new();
        for (a, o) in assignments.into_iter().zip(objects) {
            if o.is_none() && !named.contains(&a.element) {
                ended.push(a);
            } else {
                keep.push((a, o));
            }
        }
        // Devices for objects not served yet (or re-created).
        let wanted: Vec<ElementRef> = {
            let live = self.live.lock();
            keep.iter()
                .filter(|(a, o)| o.is_some() && live.served.get(&a.element) != o.as_ref())
                .map(|(a, _)| a.element.clone())
                .collect()
        };
        let mut devices: HashMap<ElementRef, Option<Arc<dyn BlockDevice>>> = HashMap::new();
        for e in wanted {
            let dev = match self.engine.device(&e) {
                Ok(d) => Some(d),
                Err(err) => {
                    warn!(element = %e, "replica LUN: cannot open the replica: {err}");
                    None
                }
            };
            devices.insert(e, dev);
        }
        let mut changed_targets: Vec<String> = Vec::new();
        let mut live = self.live.lock();
        for a in &ended {
            if let Some(t) = self.target(&a.target) {
                if live.served.remove(&a.element).is_some() {
                    t.luns.remove(a.lun);
                    changed_targets.push(a.target.clone());
                }
            }
            info!(target = %a.target, lun = a.lun, element = %a.element,
                "replica deleted: LUN removed");
            let dir = self.lu_state_dir(&a.target, a.lun);
            if dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    warn!(dir = %dir.display(), "replica LUN: cannot remove its state: {e}");
                }
            }
        }
        for (a, o) in &keep {
            let Some(t) = self.target(&a.target) else {
                continue;
            };
            match o {
                None => {
                    // Exists no more (a discarded point in time) but its
                    // synchronization remains: unmapped, number kept.
                    if live.served.remove(&a.element).is_some() {
                        t.luns.remove(a.lun);
                        changed_targets.push(a.target.clone());
                        info!(target = %a.target, lun = a.lun, element = %a.element,
                            "replica has no data now: LUN unmapped, number kept");
                    }
                }
                Some(o) => {
                    let Some(dev) = devices.remove(&a.element) else {
                        continue; // served as it is
                    };
                    let Some(dev) = dev else {
                        continue; // could not be opened (logged)
                    };
                    let g = dev.geometry();
                    let read_only = dev.read_only();
                    let lu = LogicalUnit::new(
                        dev,
                        (self.identity)(&identity_key(a)),
                        LuOptions {
                            read_only,
                            state_dir: Some(self.lu_state_dir(&a.target, a.lun)),
                            ..LuOptions::default()
                        },
                    );
                    t.luns.insert(a.lun, Arc::new(lu));
                    live.served.insert(a.element.clone(), *o);
                    changed_targets.push(a.target.clone());
                    info!(target = %a.target, lun = a.lun, element = %a.element,
                        bytes = g.blocks * g.block_size as u64, read_only,
                        "serving replica as LUN");
                }
            }
        }
        let assignments: Vec<Assignment> = keep.into_iter().map(|(a, _)| a).collect();
        let dirty = assignments != live.assignments;
        live.assignments = assignments.clone();
        drop(live);
        if dirty {
            let file = AssignmentFile { assignments };
            if let Err(e) = ironlun_replication::persist::store(&self.file, &file) {
                warn!("replica LUNs: {e}");
            }
        }
        if notify {
            changed_targets.sort();
            changed_targets.dedup();
            for iqn in changed_targets {
                if let Some(t) = self.target(&iqn) {
                    t.luns.notify_luns_changed();
                }
            }
        }
    }

    fn lu_state_dir(&self, iqn: &str, lun: u64) -> PathBuf {
        self.state_root
            .join(format!("{}-lun{lun}", crate::config::file_stem(iqn)))
    }
}

/// What a replica LU's identity (NAA designator, serial) is derived from:
/// the target and the element, so a LUN number given to another replica
/// later never shows the same identity.
fn identity_key(a: &Assignment) -> String {
    format!("{}/replica/{}/{}", a.target, a.element.pool, a.element.name)
}

impl ElementObserver for ReplicaExposure {
    fn releasing(&self, element: &ElementRef) {
        let mut live = self.live.lock();
        if live.served.remove(element).is_none() {
            return;
        }
        if let Some(a) = live.assignments.iter().find(|a| &a.element == element) {
            if let Some(t) = self.target(&a.target) {
                t.luns.remove(a.lun);
                t.luns.notify_luns_changed();
                info!(target = %a.target, lun = a.lun, element = %element,
                    "replica being deleted or re-taken: LUN unmapped");
            }
        }
    }

    fn changed(&self) {
        self.reconcile(true);
    }
}

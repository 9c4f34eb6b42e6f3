//! Jobs (CIM_ConcreteJob): long work run in the background with JobState,
//! PercentComplete, times, errors and TimeBeforeRemoval; suspend, resume
//! and terminate go through [`JobControl`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::model::JobState;
use crate::ElementRef;

/// Default TimeBeforeRemoval (model.md: 5 minutes).
pub const DEFAULT_TIME_BEFORE_REMOVAL: Duration = Duration::from_secs(300);

/// A job's identity (InstanceID `IRONLUN:job-<n>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IRONLUN:job-{}", self.0)
    }
}

/// What a job copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Work {
    /// Copy `from` (a point in time of the source) onto the replica's
    /// target. `fill_clone`: the target is a cow clone of `from` being made
    /// independent, so extents the target already owns are never copied
    /// (they hold the initiator's newer data, also after a restart).
    CopyToTarget { from: ElementRef, fill_clone: bool },
    /// Mirror: copy the live source onto the target (the job's
    /// destination), each extent under the source's extent lock so it
    /// orders with forwarded writes.
    MirrorToTarget,
    /// Copy `from` (the replica, or an aspect's point in time) back onto
    /// the job's destination (the source).
    CopyToSource { from: ElementRef },
}

/// One job record (persisted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    /// The method that started it (e.g. "CreateElementReplica").
    pub method: String,
    /// The synchronization it works for (none for an aspect's Restore).
    pub synchronization: Option<u64>,
    /// Where CopyToSource writes (the source element); CopyToTarget writes
    /// the synchronization's target.
    pub destination: ElementRef,
    pub state: JobState,
    pub percent_complete: u8,
    /// Unix milliseconds.
    pub time_submitted: u64,
    pub start_time: Option<u64>,
    pub time_of_last_state_change: u64,
    pub finished: Option<u64>,
    /// Why it failed (JobState Exception).
    pub error: Option<String>,
    pub time_before_removal_ms: u64,
    pub work: Work,
    /// Extents still to copy (persisted, so a restart resumes here).
    pub remaining: RoaringBitmap,
    pub total_extents: u64,
    /// Bytes this job moved (the engine's own counter).
    pub bytes_copied: u64,
}

impl Job {
    /// ElapsedTime: from start to finish (or now).
    pub fn elapsed(&self) -> Duration {
        let end = self.finished.unwrap_or_else(now_ms);
        Duration::from_millis(end.saturating_sub(self.start_time.unwrap_or(end)))
    }

    /// Whether TimeBeforeRemoval has passed since the job finished.
    pub fn expired(&self, now: u64) -> bool {
        self.finished
            .is_some_and(|f| now.saturating_sub(f) >= self.time_before_removal_ms)
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the running job is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Run,
    Suspend,
    /// Stop for good (Abort, Terminate).
    Terminate,
    /// Stop for now; the record stays unfinished and resumes on restart.
    Shutdown,
}

/// Shared between a job's thread and its controllers.
#[derive(Debug, Default)]
pub struct JobControl {
    command: AtomicU8,
}

impl JobControl {
    pub fn set(&self, c: Command) {
        self.command.store(c as u8, Ordering::SeqCst);
    }

    pub fn get(&self) -> Command {
        match self.command.load(Ordering::SeqCst) {
            0 => Command::Run,
            1 => Command::Suspend,
            2 => Command::Terminate,
            _ => Command::Shutdown,
        }
    }
}

//! Shared helpers: real pools in temp files, patterned writes, compares.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use ironlun_cow::{BlockDevice, Durability, Pool};
use ironlun_replication::model::CopyState;
use ironlun_replication::{ElementRef, ReplicationService, WaitFor};

pub const MIB: u64 = 1 << 20;
pub const EXTENT: u64 = 64 << 10;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub pool: Arc<Pool>,
    pub svc: Arc<ReplicationService>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::create(dir.path().join("pool.img"), 1024 * MIB, EXTENT as u32).unwrap();
        let svc = ReplicationService::open(
            [("p".to_string(), pool.clone())],
            dir.path().join("repl.json"),
        )
        .unwrap();
        Env { dir, pool, svc }
    }

    /// Stops the service and opens a new one on the same pool and state file.
    pub fn restart(&mut self) {
        self.svc.shutdown();
        self.svc = ReplicationService::open(
            [("p".to_string(), self.pool.clone())],
            self.dir.path().join("repl.json"),
        )
        .unwrap();
    }

    pub fn volume(&self, name: &str, size: u64) -> ElementRef {
        self.pool.create_volume(name, size).unwrap();
        ElementRef::new("p", name)
    }

    pub fn dev(&self, e: &ElementRef) -> Arc<dyn BlockDevice> {
        self.svc.device(e).unwrap()
    }

    /// Fills every extent of `e` with `(tag, extent index)`.
    pub fn fill(&self, e: &ElementRef, tag: u8) {
        let d = self.dev(e);
        let extents = d.geometry().blocks * 512 / EXTENT;
        for x in 0..extents {
            write_extent(d.as_ref(), x, tag);
        }
        d.flush().unwrap();
    }

    pub fn read_all(&self, e: &ElementRef) -> Vec<u8> {
        read_all(self.dev(e).as_ref())
    }
}

pub fn write_extent(d: &dyn BlockDevice, x: u64, tag: u8) {
    let mut buf = vec![tag; EXTENT as usize];
    buf[..8].copy_from_slice(&x.to_le_bytes());
    d.write(x * EXTENT / 512, &buf, Durability::Cached).unwrap();
}

pub fn read_all(d: &dyn BlockDevice) -> Vec<u8> {
    let mut buf = vec![0u8; (d.geometry().blocks * 512) as usize];
    d.read(0, &mut buf).unwrap();
    buf
}

pub fn wait(state: CopyState) -> Option<WaitFor> {
    Some(WaitFor {
        state,
        timeout: Duration::from_secs(20),
    })
}

//! Criterion benchmark of the extent-map lookup every read and write does
//! (`Meta::lookup`), in memory: a 1 GiB volume with every 64 KiB extent
//! mapped, a snapshot, half the extents rewritten after it, and a clone of
//! the snapshot. Cases: the live head, the snapshot (a rewritten extent is
//! found among the retired mappings), and the clone (reads through to its
//! origin).
//!
//! Run: `cargo bench -p ironlun-cow --bench extent_lookup`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ironlun_cow::format::{Layout, Record};
use ironlun_cow::meta::{Meta, LIVE};

const EXT: u32 = 64 << 10;
const EXTENTS: u64 = (1 << 30) / EXT as u64;

fn populated() -> Meta {
    let layout = Layout::plan(4 << 30, EXT, 512, None).unwrap();
    let mut m = Meta::new(layout);
    let apply = |m: &mut Meta, r: Record| {
        m.apply(&r, true).unwrap();
        m.last_seq += 1;
    };
    apply(
        &mut m,
        Record::CreateVolume {
            id: 1,
            name: "v".into(),
            size: EXTENTS * EXT as u64,
            base: None,
        },
    );
    for vext in 0..EXTENTS {
        let birth = m.gen;
        apply(
            &mut m,
            Record::Map {
                vol: 1,
                vext,
                pext: vext,
                birth,
            },
        );
    }
    let gen = m.gen;
    apply(
        &mut m,
        Record::Snapshot {
            vol: 1,
            gen,
            name: "s".into(),
        },
    );
    for vext in (0..EXTENTS).step_by(2) {
        let birth = m.gen;
        apply(
            &mut m,
            Record::Map {
                vol: 1,
                vext,
                pext: EXTENTS + vext,
                birth,
            },
        );
    }
    apply(
        &mut m,
        Record::CreateVolume {
            id: 2,
            name: "c".into(),
            size: EXTENTS * EXT as u64,
            base: Some((1, gen)),
        },
    );
    m
}

fn lookup(c: &mut Criterion) {
    let m = populated();
    let snap = m.vol(1).unwrap().newest_snap().unwrap();
    // A fixed pseudo-random walk over the extents (no RNG dependency).
    let mut walk = (0..4096u64).map(|i| (i.wrapping_mul(0x9e37_79b9) >> 3) % EXTENTS);
    let order: Vec<u64> = (&mut walk).collect();
    let mut g = c.benchmark_group("extent_lookup");
    for (name, vol, at) in [("live", 1, LIVE), ("snapshot", 1, snap), ("clone", 2, LIVE)] {
        g.bench_function(name, |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % order.len();
                m.lookup(black_box(vol), black_box(order[i]), black_box(at))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);

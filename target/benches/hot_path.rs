//! Criterion benchmarks of the per-command work on the iSCSI data path
//! that involves no I/O: decoding the BHS of a SCSI Command and a Data-Out,
//! encoding a Data-In with status and a SCSI Response, and decoding the
//! READ / WRITE CDBs a 4k workload sends; and the CRC32C digests a session
//! with HeaderDigest / DataDigest=CRC32C computes per PDU (the same
//! `crc32c` calls the connection makes: one over each 48-byte BHS, one over
//! each data segment), since no initiator on this machine drives data
//! digests at speed (docs/BENCHMARKS.md).
//!
//! Run: `cargo bench -p ironlun-target --bench hot_path`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ironlun_target::pdu::{
    encode_initiator, DataOut, InitiatorPdu, Residual, ScsiCommand, TargetPdu, TargetSeq, TaskAttr,
};
use ironlun_target::scsi::cdb;

fn read10(lba: u32, blocks: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn write16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x8a;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn pdu_codec(c: &mut Criterion) {
    let cmd = InitiatorPdu::ScsiCommand(ScsiCommand {
        immediate: false,
        final_: true,
        read: true,
        write: false,
        attr: TaskAttr::Simple,
        lun: 0,
        itt: 0x1234,
        edtl: 4096,
        cmdsn: 77,
        exp_statsn: 66,
        cdb: read10(1000, 8),
    });
    let cmd_bhs = encode_initiator(&cmd, 0, 0);
    let data_out = InitiatorPdu::DataOut(DataOut {
        final_: true,
        lun: 0,
        itt: 0x1234,
        ttt: 9,
        exp_statsn: 66,
        datasn: 0,
        buffer_offset: 0,
    });
    let data_out_bhs = encode_initiator(&data_out, 0, 4096);
    let mut g = c.benchmark_group("pdu");
    g.bench_function("decode_scsi_command", |b| {
        b.iter(|| InitiatorPdu::decode(black_box(&cmd_bhs)))
    });
    g.bench_function("decode_data_out", |b| {
        b.iter(|| InitiatorPdu::decode(black_box(&data_out_bhs)))
    });
    let seq = TargetSeq {
        statsn: 5,
        exp_cmdsn: 78,
        max_cmdsn: 205,
    };
    let data_in = TargetPdu::DataIn {
        lun: 0,
        itt: 0x1234,
        final_: true,
        status: Some(0),
        residual: Residual::None,
        datasn: 0,
        buffer_offset: 0,
    };
    g.bench_function("encode_data_in_with_status", |b| {
        b.iter(|| black_box(&data_in).encode(black_box(seq), 4096))
    });
    let response = TargetPdu::ScsiResponse {
        itt: 0x1234,
        response: 0,
        status: 0,
        residual: Residual::None,
        exp_datasn: 0,
    };
    g.bench_function("encode_scsi_response", |b| {
        b.iter(|| black_box(&response).encode(black_box(seq), 0))
    });
    g.finish();
}

fn cdb_decoder(c: &mut Criterion) {
    let r = read10(123_456, 8);
    let w = write16(987_654, 8);
    let mut g = c.benchmark_group("cdb");
    g.bench_function("decode_read10", |b| b.iter(|| cdb::decode(black_box(&r))));
    g.bench_function("decode_write16", |b| b.iter(|| cdb::decode(black_box(&w))));
    g.finish();
}

fn digests(c: &mut Criterion) {
    let bhs = [0x5au8; 48];
    let data: Vec<u8> = (0..128 << 10).map(|i: u32| (i * 31) as u8).collect();
    let mut g = c.benchmark_group("digest");
    g.bench_function("header_digest_bhs", |b| {
        b.iter(|| crc32c::crc32c(black_box(&bhs)))
    });
    g.bench_function("data_digest_4k", |b| {
        b.iter(|| crc32c::crc32c(black_box(&data[..4096])))
    });
    g.bench_function("data_digest_128k", |b| {
        b.iter(|| crc32c::crc32c(black_box(&data)))
    });
    g.finish();
}

criterion_group!(benches, pdu_codec, cdb_decoder, digests);
criterion_main!(benches);

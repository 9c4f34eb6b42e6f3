//! The full feature phase of one connection: SCSI commands with immediate,
//! unsolicited and solicited (R2T) data, Data-In with status, task
//! management, NOP-In/Out both ways, text requests and logout.
//!
//! One reader loop owns everything inbound: the CmdSN window, the write
//! buffers of commands still collecting data (Data-Out is read straight into
//! them), and the R2T bookkeeping. Commands whose data is complete run on
//! blocking threads against the LUN map; every PDU the target sends goes
//! through one writer task that stamps StatSN / ExpCmdSN / MaxCmdSN and
//! sends whatever is queued in one vectored write.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::connection::{FrameError, FrameReader, FrameWriter, Header, OutFrame};
use crate::pdu::{
    self, DataOut, InitiatorPdu, LogoutReason, NopOut, RejectReason, Residual, ScsiCommand,
    TargetPdu, TargetSeq, TaskMgmtRequest, TmfFunction, TmfResponse, RESERVED_TAG,
};
use crate::scsi::sense::{self, Sense};
use crate::scsi::{self, CommandOutcome, CommandRequest, LunMap, Nexus, TargetPort};

/// A target as the full feature phase sees it.
pub struct TargetRuntime {
    pub name: String,
    pub luns: Arc<LunMap>,
    pub port: Arc<TargetPort>,
}

/// Transport settings that are not negotiated.
#[derive(Debug, Clone)]
pub struct FfpSettings {
    /// Send a NOP-In ping after this much silence from the initiator.
    pub nop_interval: Duration,
    /// Drop the connection when a ping is not answered within this time.
    pub nop_timeout: Duration,
    /// Size of the CmdSN window (MaxCmdSN - ExpCmdSN + 1).
    pub cmd_window: u32,
    /// Largest data transfer a single command may ask for.
    pub max_command_bytes: u32,
    /// A PDU whose first byte arrived must be complete within this time.
    pub pdu_timeout: Duration,
}

impl Default for FfpSettings {
    fn default() -> Self {
        FfpSettings {
            nop_interval: Duration::from_secs(15),
            nop_timeout: Duration::from_secs(15),
            cmd_window: 128,
            max_command_bytes: 64 << 20,
            pdu_timeout: Duration::from_secs(30),
        }
    }
}

/// The negotiated values the full feature phase needs.
#[derive(Debug, Clone, Copy)]
pub struct TransportParams {
    /// What the initiator can receive in one data segment.
    pub max_xmit_dsl: u32,
    /// What we receive in one data segment (declared by us).
    pub max_recv_dsl: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
}

/// Answers text requests in the full feature phase (SendTargets and
/// friends). Implemented with the discovery module.
pub trait TextResponder: Send + Sync {
    /// Handles one Text Request; returns the Text Response header and data.
    fn respond(&mut self, req: &pdu::TextRequest, data: &[u8]) -> (TargetPdu, Bytes);
}

/// Everything a connection needs to run the full feature phase.
pub struct FfpContext {
    /// `None` for a discovery session.
    pub target: Option<Arc<TargetRuntime>>,
    pub nexus: Option<Nexus>,
    pub params: TransportParams,
    pub settings: FfpSettings,
    /// StatSN of the first PDU after the login response.
    pub first_statsn: u32,
    /// ExpCmdSN after login.
    pub exp_cmdsn: u32,
    pub text: Box<dyn TextResponder>,
    /// Becomes true when the session must end (reinstatement, reset,
    /// server shutdown).
    pub close: watch::Receiver<bool>,
    /// A label for logs (initiator name, ISID, peer address).
    pub label: String,
}

/// How a full feature phase ended.
#[derive(Debug, PartialEq, Eq)]
pub enum FfpEnd {
    /// The initiator logged the session out.
    Logout,
    /// The peer closed the connection.
    PeerClosed,
    /// We closed it: a protocol error, timeout or a close signal.
    Dropped(String),
    /// A TARGET COLD RESET was requested: every session of the target ends.
    ColdReset,
}

/// Sequence numbers shared between the reader and the writer.
struct Window {
    exp_cmdsn: AtomicU32,
    max_cmdsn: AtomicU32,
}

/// What the reader and the commands queue for the writer: most answers
/// are one PDU (a write's response, a small read's Data-In with status),
/// which then needs no list of its own.
enum Out {
    One(TargetPdu, Bytes),
    Pdus(Vec<(TargetPdu, Bytes)>),
}

/// Hashes task tags (ITT, TTT) for the per-connection tables: tags are
/// chosen by the peer and the tables are bounded by the CmdSN window, so a
/// multiplicative hash does (SipHash cost more than the lookup it guards).
#[derive(Default)]
struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, tag: u32) {
        self.0 = (self.0 ^ tag as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A table keyed by task tag.
type TagMap<V> = HashMap<u32, V, BuildHasherDefault<TagHasher>>;

/// Task bookkeeping shared by the reader and executing commands.
#[derive(Default)]
struct Tasks {
    /// Running commands by ITT: their LUN and abort flag.
    running: Mutex<TagMap<RunningTask>>,
    /// Signalled whenever a running command finishes.
    done: tokio::sync::Notify,
}

struct RunningTask {
    lun: u64,
    /// Set (under the `running` lock) by an abort: the answer is dropped.
    aborted: bool,
    /// The LUN's reset count when the command arrived: a reset from any
    /// session since then aborted it, and its answer is dropped too.
    epoch: u64,
}

/// A write command still collecting Data-Out.
struct Collecting {
    cmd: ScsiCommand,
    lun: u64,
    /// The LUN's reset count when the command arrived.
    epoch: u64,
    buf: BytesMut,
    received: usize,
    /// Offset up to which R2Ts have been sent (or data is unsolicited).
    requested: usize,
    outstanding_r2t: u32,
    next_r2tsn: u32,
    /// Expected DataSN of the next Data-Out in the current sequence, by TTT.
    next_datasn: TagMap<u32>,
    /// Unsolicited data still expected before R2Ts take over.
    unsolicited_end: usize,
}

/// Runs the full feature phase until logout, peer close or a drop.
pub async fn run<R, W>(
    mut reader: FrameReader<R>,
    writer: FrameWriter<W>,
    mut ctx: FfpContext,
) -> FfpEnd
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let window = Arc::new(Window {
        exp_cmdsn: AtomicU32::new(ctx.exp_cmdsn),
        max_cmdsn: AtomicU32::new(ctx.exp_cmdsn.wrapping_add(ctx.settings.cmd_window - 1)),
    });
    let (tx, rx) = mpsc::unbounded_channel::<Out>();
    let (writer_dead_tx, mut writer_dead) = watch::channel(false);
    let writer_task = tokio::spawn(writer_loop(
        writer,
        rx,
        window.clone(),
        ctx.first_statsn,
        writer_dead_tx,
    ));
    let tasks = Arc::new(Tasks::default());
    if let (Some(t), Some(n)) = (&ctx.target, &ctx.nexus) {
        t.luns.register_nexus(n);
    }
    let mut state = Reader {
        tx: tx.clone(),
        window: window.clone(),
        tasks: tasks.clone(),
        collecting: TagMap::default(),
        collecting_ext: TagMap::default(),
        next_ttt: 1,
        ping: None,
        nexus: ctx.nexus.clone().map(Arc::new),
    };
    let end = loop {
        if reader.has_buffered() {
            // The next PDU is already here (pipelined commands): no need to
            // wait, only to notice a close without parking on it.
            if ctx.close.has_changed().unwrap_or(true) {
                break FfpEnd::Dropped("session closed by the target".into());
            }
            if writer_dead.has_changed().unwrap_or(true) {
                break FfpEnd::Dropped("send failed".into());
            }
        } else {
            // Wait for the next PDU, a ping deadline, or a close signal.
            let wait = match state.ping {
                Some((_, sent)) => ctx
                    .settings
                    .nop_timeout
                    .saturating_sub(sent.elapsed())
                    .max(Duration::from_millis(1)),
                None => ctx.settings.nop_interval,
            };
            tokio::select! {
                biased;
                _ = ctx.close.changed() => {
                    break FfpEnd::Dropped("session closed by the target".into());
                }
                _ = writer_dead.changed() => {
                    break FfpEnd::Dropped("send failed".into());
                }
                ready = tokio::time::timeout(wait, reader.wait_readable()) => {
                    match ready {
                        Err(_) => {
                            if state.ping.is_some() {
                                break FfpEnd::Dropped("NOP-In ping not answered".into());
                            }
                            state.send_ping();
                            continue;
                        }
                        Ok(Err(e)) => break end_of(e),
                        Ok(Ok(())) => {}
                    }
                }
            }
        }
        // One deadline covers the whole PDU, header and data.
        let mut header_read = false;
        let step = tokio::time::timeout(ctx.settings.pdu_timeout, async {
            let header = reader.read_header().await?;
            header_read = true;
            // Any PDU from the initiator shows it is alive.
            state.ping = None;
            state.handle(&mut reader, header, &mut ctx).await
        })
        .await;
        match step {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(end))) => break end,
            Ok(Err(e)) => break end_of(e),
            Err(_) if header_read => break FfpEnd::Dropped("PDU data incomplete".into()),
            Err(_) => break FfpEnd::Dropped("PDU header incomplete".into()),
        }
    };
    // Stop running commands from answering on a dead connection, give the
    // writer a moment to send what is queued (the logout response), then end.
    for t in tasks.running.lock().values_mut() {
        t.aborted = true;
    }
    drop(state);
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
    // The I_T nexus is gone (logout, connection loss or reinstatement).
    if let (Some(t), Some(n)) = (&ctx.target, &ctx.nexus) {
        t.luns.nexus_lost(n.id);
    }
    debug!(session = %ctx.label, ?end, "connection ended");
    end
}

fn end_of(e: FrameError) -> FfpEnd {
    match e {
        FrameError::Closed => FfpEnd::PeerClosed,
        other => FfpEnd::Dropped(other.to_string()),
    }
}

async fn writer_loop<W: AsyncWrite + Unpin>(
    mut writer: FrameWriter<W>,
    mut rx: mpsc::UnboundedReceiver<Out>,
    window: Arc<Window>,
    mut statsn: u32,
    dead: watch::Sender<bool>,
) {
    let mut frames: Vec<OutFrame> = Vec::with_capacity(64);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut stamp = |frames: &mut Vec<OutFrame>, pdu: TargetPdu, data: Bytes| {
            let seq = TargetSeq {
                statsn,
                exp_cmdsn: window.exp_cmdsn.load(Ordering::SeqCst),
                max_cmdsn: window.max_cmdsn.load(Ordering::SeqCst),
            };
            let bhs = pdu.encode(seq, data.len());
            if pdu.advances_statsn() {
                statsn = statsn.wrapping_add(1);
            }
            frames.push(OutFrame { bhs, data });
        };
        while let Some(out) = next.take() {
            match out {
                Out::One(pdu, data) => stamp(&mut frames, pdu, data),
                Out::Pdus(pdus) => {
                    for (pdu, data) in pdus {
                        stamp(&mut frames, pdu, data);
                    }
                }
            }
            if frames.len() < 64 {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = writer.send(&frames).await {
            debug!(error = %e, "send failed");
            let _ = dead.send(true);
            return;
        }
        frames.clear();
    }
    writer.shutdown().await;
}

struct Reader {
    tx: mpsc::UnboundedSender<Out>,
    window: Arc<Window>,
    tasks: Arc<Tasks>,
    collecting: TagMap<Collecting>,
    /// Extended CDBs (longer than 16 bytes) of commands still collecting.
    collecting_ext: TagMap<Vec<u8>>,
    next_ttt: u32,
    /// An unanswered NOP-In ping: its TTT and when it was sent.
    ping: Option<(u32, std::time::Instant)>,
    /// The session's I_T nexus, shared with every command it runs.
    nexus: Option<Arc<Nexus>>,
}

type Step = Result<Option<FfpEnd>, FrameError>;

impl Reader {
    /// The session's nexus id (0 for a discovery session, which has none).
    fn nexus_id(&self) -> u64 {
        self.nexus.as_ref().map_or(0, |n| n.id)
    }

    fn send(&self, pdu: TargetPdu, data: Bytes) {
        let _ = self.tx.send(Out::One(pdu, data));
    }

    fn reject(&self, reason: RejectReason, header: &Header) {
        self.send(
            TargetPdu::Reject {
                reason,
                datasn_r2tsn: 0,
            },
            Bytes::copy_from_slice(&header.bhs),
        );
    }

    fn new_ttt(&mut self) -> u32 {
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG || self.next_ttt == 0 {
            self.next_ttt = 1;
        }
        t
    }

    fn send_ping(&mut self) {
        let ttt = self.new_ttt();
        self.ping = Some((ttt, std::time::Instant::now()));
        self.send(
            TargetPdu::NopIn {
                lun: 0,
                itt: RESERVED_TAG,
                ttt,
                advance_statsn: false,
            },
            Bytes::new(),
        );
    }

    /// Applies the CmdSN rules to a non-Data-Out PDU. Returns false when the
    /// PDU is outside the window and must be ignored.
    fn accept_cmdsn(&self, pdu: &InitiatorPdu) -> bool {
        let Some(cmdsn) = pdu.cmdsn() else {
            return true;
        };
        let exp = self.window.exp_cmdsn.load(Ordering::SeqCst);
        let max = self.window.max_cmdsn.load(Ordering::SeqCst);
        if pdu.immediate() {
            return true;
        }
        if pdu::sn_lt(cmdsn, exp) || pdu::sn_lt(max, cmdsn) {
            return false;
        }
        // In order (one connection per session): advance the window.
        let new_exp = cmdsn.wrapping_add(1);
        self.window.exp_cmdsn.store(new_exp, Ordering::SeqCst);
        self.window.max_cmdsn.store(
            new_exp.wrapping_add(max.wrapping_sub(exp)),
            Ordering::SeqCst,
        );
        true
    }

    async fn handle<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        header: Header,
        ctx: &mut FfpContext,
    ) -> Step {
        let pdu = match InitiatorPdu::decode(&header.bhs) {
            Ok(p) => p,
            Err(e) => {
                warn!(session = %ctx.label, error = %e, "rejecting PDU");
                self.reject(e.reject_reason(), &header);
                reader.skip_data(header.data_len).await?;
                return Ok(None);
            }
        };
        let max_recv = ctx.params.max_recv_dsl as usize;
        if header.data_len > max_recv {
            warn!(session = %ctx.label, len = header.data_len, limit = max_recv,
                "data segment over MaxRecvDataSegmentLength; closing the connection");
            self.reject(RejectReason::ProtocolError, &header);
            return Ok(Some(FfpEnd::Dropped(
                "data segment over MaxRecvDataSegmentLength".into(),
            )));
        }
        if !matches!(pdu, InitiatorPdu::DataOut(_)) && !self.accept_cmdsn(&pdu) {
            debug!(session = %ctx.label, cmdsn = ?pdu.cmdsn(), "CmdSN outside the window: ignored");
            reader.skip_data(header.data_len).await?;
            return Ok(None);
        }
        match pdu {
            InitiatorPdu::ScsiCommand(cmd) => self.scsi_command(reader, header, cmd, ctx).await,
            InitiatorPdu::DataOut(d) => self.data_out(reader, header, d, ctx).await,
            InitiatorPdu::NopOut(n) => self.nop_out(reader, header, n).await,
            InitiatorPdu::TaskMgmt(t) => {
                reader.skip_data(header.data_len).await?;
                Ok(self.task_mgmt(t, ctx))
            }
            InitiatorPdu::Text(t) => {
                let data = reader.read_data(header.data_len, max_recv).await?;
                let (resp, out) = ctx.text.respond(&t, &data);
                self.send(resp, out);
                Ok(None)
            }
            InitiatorPdu::Logout(l) => {
                reader.skip_data(header.data_len).await?;
                self.logout(l, ctx).await
            }
            InitiatorPdu::Snack(_) => {
                // ErrorRecoveryLevel 0: SNACK is not supported.
                reader.skip_data(header.data_len).await?;
                self.reject(RejectReason::ProtocolError, &header);
                Ok(None)
            }
            InitiatorPdu::Login(_) => {
                self.reject(RejectReason::ProtocolError, &header);
                Ok(Some(FfpEnd::Dropped(
                    "login PDU in full feature phase".into(),
                )))
            }
        }
    }

    async fn nop_out<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        header: Header,
        nop: NopOut,
    ) -> Step {
        let data = reader
            .read_data(header.data_len, header.data_len.max(1))
            .await?;
        if nop.itt == RESERVED_TAG {
            // An answer to our ping (or a bare ExpStatSN update): no reply.
            return Ok(None);
        }
        if nop.ttt != RESERVED_TAG {
            self.reject(RejectReason::ProtocolError, &header);
            return Ok(None);
        }
        self.send(
            TargetPdu::NopIn {
                lun: nop.lun,
                itt: nop.itt,
                ttt: RESERVED_TAG,
                advance_statsn: true,
            },
            data.freeze(),
        );
        Ok(None)
    }

    async fn scsi_command<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        header: Header,
        cmd: ScsiCommand,
        ctx: &mut FfpContext,
    ) -> Step {
        let Some(target) = ctx.target.clone() else {
            // Discovery sessions carry no SCSI commands.
            reader.skip_data(header.data_len).await?;
            self.reject(RejectReason::ProtocolError, &header);
            return Ok(None);
        };
        if self.collecting.contains_key(&cmd.itt)
            || self.tasks.running.lock().contains_key(&cmd.itt)
        {
            reader.skip_data(header.data_len).await?;
            self.reject(RejectReason::TaskInProgress, &header);
            return Ok(None);
        }
        if header.data_len > 0 && (!ctx.params.immediate_data || !cmd.write) {
            reader.skip_data(header.data_len).await?;
            self.reject(RejectReason::ProtocolError, &header);
            return Ok(None);
        }
        let lun = scsi::decode_lun(cmd.lun).unwrap_or(u64::MAX);
        // The full CDB is the BHS part, plus an extended CDB AHS if any
        // (rare: only then is it copied into a list of its own).
        let long_cdb: Option<Vec<u8>> = extended_cdb(&header.ahs).map(|ext| {
            let mut full = cmd.cdb.to_vec();
            full.extend_from_slice(ext);
            full
        });
        let cdb: &[u8] = long_cdb.as_deref().unwrap_or(&cmd.cdb);
        let edtl = cmd.edtl as usize;
        let wanted = if cmd.write {
            target
                .luns
                .data_out_len(lun, cdb)
                .map(|n| n as usize)
                .unwrap_or(0)
                .min(edtl)
        } else {
            0
        };
        if wanted > ctx.settings.max_command_bytes as usize {
            reader.skip_data(header.data_len).await?;
            self.answer_early(ctx, &cmd, too_large_outcome());
            return Ok(None);
        }
        if wanted == 0 {
            reader.skip_data(header.data_len).await?;
            self.finish(&target, ctx, cmd, lun, long_cdb, BytesMut::new(), None);
            return Ok(None);
        }
        let mut buf = BytesMut::zeroed(wanted);
        let immediate = header.data_len;
        let keep = immediate.min(wanted);
        if keep > 0 {
            reader
                .read_data_into_partial(&mut buf[..keep], immediate)
                .await?;
        } else if immediate > 0 {
            reader.skip_data(immediate).await?;
        }
        let unsolicited_end = if !ctx.params.initial_r2t && !cmd.final_ {
            (ctx.params.first_burst_length as usize).min(edtl)
        } else {
            immediate.min(edtl)
        };
        let mut next_datasn = TagMap::default();
        if unsolicited_end > immediate {
            next_datasn.insert(RESERVED_TAG, 0);
        }
        let mut c = Collecting {
            cmd,
            lun,
            epoch: target.luns.task_epoch(lun, self.nexus_id()),
            buf,
            received: keep,
            requested: unsolicited_end.min(wanted),
            outstanding_r2t: 0,
            next_r2tsn: 0,
            next_datasn,
            unsolicited_end,
        };
        if c.received >= wanted && c.requested >= wanted {
            let epoch = c.epoch;
            let Collecting { cmd, lun, buf, .. } = c;
            self.finish(&target, ctx, cmd, lun, long_cdb, buf, Some(epoch));
            return Ok(None);
        }
        self.issue_r2ts(&mut c, ctx);
        if let Some(long_cdb) = long_cdb {
            // Rare: keep the extended CDB with the command.
            self.collecting_ext.insert(c.cmd.itt, long_cdb);
        }
        self.collecting.insert(c.cmd.itt, c);
        Ok(None)
    }

    fn issue_r2ts(&mut self, c: &mut Collecting, ctx: &FfpContext) {
        let total = c.buf.len();
        let burst = ctx.params.max_burst_length.max(512) as usize;
        let mut pdus = Vec::new();
        while c.requested < total && c.outstanding_r2t < ctx.params.max_outstanding_r2t.max(1) {
            let len = burst.min(total - c.requested);
            let ttt = self.new_ttt();
            pdus.push((
                TargetPdu::R2T {
                    lun: c.cmd.lun,
                    itt: c.cmd.itt,
                    ttt,
                    r2tsn: c.next_r2tsn,
                    buffer_offset: c.requested as u32,
                    desired_length: len as u32,
                },
                Bytes::new(),
            ));
            c.next_datasn.insert(ttt, 0);
            c.next_r2tsn = c.next_r2tsn.wrapping_add(1);
            c.outstanding_r2t += 1;
            c.requested += len;
        }
        if !pdus.is_empty() {
            let _ = self.tx.send(Out::Pdus(pdus));
        }
    }

    async fn data_out<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        header: Header,
        d: DataOut,
        ctx: &mut FfpContext,
    ) -> Step {
        let Some(mut c) = self.collecting.remove(&d.itt) else {
            // Data for a task we no longer track (aborted, or finished early
            // with a status): discard it.
            debug!(session = %ctx.label, itt = d.itt, "Data-Out for an unknown task: discarded");
            reader.skip_data(header.data_len).await?;
            return Ok(None);
        };
        let len = header.data_len;
        let offset = d.buffer_offset as usize;
        let total = c.buf.len();
        let edtl = c.cmd.edtl as usize;
        if offset.saturating_add(len) > edtl {
            warn!(session = %ctx.label, itt = d.itt, offset, len, edtl,
                "Data-Out beyond the expected transfer length; closing the connection");
            self.reject(RejectReason::ProtocolError, &header);
            return Ok(Some(FfpEnd::Dropped("Data-Out beyond EDTL".into())));
        }
        if d.ttt == RESERVED_TAG && offset.saturating_add(len) > c.unsolicited_end {
            self.reject(RejectReason::ProtocolError, &header);
            return Ok(Some(FfpEnd::Dropped(
                "unsolicited Data-Out beyond FirstBurstLength".into(),
            )));
        }
        // DataSN runs from 0 within each sequence: the unsolicited one
        // (TTT 0xffffffff) and one per R2T.
        if let Some(next) = c.next_datasn.get_mut(&d.ttt) {
            if d.datasn != *next {
                // End this task only: ABORTED COMMAND / DATA PHASE ERROR.
                // Further Data-Out for it is discarded as unknown.
                warn!(session = %ctx.label, itt = d.itt, got = d.datasn, want = *next,
                    "Data-Out with a wrong DataSN; ending the command");
                reader.skip_data(len).await?;
                self.collecting_ext.remove(&d.itt);
                self.answer_early(ctx, &c.cmd, data_phase_error_outcome());
                return Ok(None);
            }
            *next = next.wrapping_add(1);
        } else {
            self.reject(RejectReason::InvalidPduField, &header);
            reader.skip_data(len).await?;
            self.collecting.insert(d.itt, c);
            return Ok(None);
        }
        // Read what the command needs into its buffer, discard any excess.
        let keep = total.saturating_sub(offset).min(len);
        if keep > 0 {
            reader
                .read_data_into_partial(&mut c.buf[offset..offset + keep], len)
                .await?;
        } else {
            reader.skip_data(len).await?;
        }
        c.received += keep;
        if d.final_ && d.ttt != RESERVED_TAG {
            c.next_datasn.remove(&d.ttt);
            c.outstanding_r2t = c.outstanding_r2t.saturating_sub(1);
            self.issue_r2ts(&mut c, ctx);
        }
        if c.received >= total && c.outstanding_r2t == 0 && c.requested >= total {
            let target = ctx.target.clone().expect("collecting implies a target");
            let long_cdb = self.collecting_ext.remove(&d.itt);
            if target.luns.task_epoch(c.lun, self.nexus_id()) != c.epoch {
                // A reset (from any session) aborted it while its data
                // arrived: it never runs and never answers.
                debug!(session = %ctx.label, itt = d.itt, "command aborted by a reset");
                return Ok(None);
            }
            let epoch = c.epoch;
            let Collecting { cmd, lun, buf, .. } = c;
            self.finish(&target, ctx, cmd, lun, long_cdb, buf, Some(epoch));
        } else {
            self.collecting.insert(d.itt, c);
        }
        Ok(None)
    }

    /// Answers a command the transport ends by itself (nothing runs).
    fn answer_early(&self, ctx: &FfpContext, cmd: &ScsiCommand, outcome: CommandOutcome) {
        let _ = self.tx.send(response_pdus(cmd, outcome, &ctx.params));
    }

    /// Runs a command whose data is complete and sends its answer.
    /// `long_cdb` is the whole CDB when an extended CDB AHS made it longer
    /// than the 16 bytes in `cmd`; `arrival_epoch` the unit's task epoch
    /// when it arrived, if that was before now.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        target: &Arc<TargetRuntime>,
        ctx: &FfpContext,
        cmd: ScsiCommand,
        lun: u64,
        long_cdb: Option<Vec<u8>>,
        data_out: BytesMut,
        arrival_epoch: Option<u64>,
    ) {
        let params = ctx.params;
        // The unit's task epoch when the command arrived (read now for a
        // command complete on arrival): a reset or PREEMPT AND ABORT after
        // that aborts it, whichever way it then runs (inline, or on a
        // blocking thread after an inline attempt gave up).
        let epoch = arrival_epoch.unwrap_or_else(|| target.luns.task_epoch(lun, self.nexus_id()));
        if let (true, Some(nexus)) = (cmd.read != cmd.write, self.nexus.as_ref()) {
            // A READ whose data is cached, or a WRITE that goes straight
            // into the page cache, is answered here, without the hop to a
            // blocking thread (see `scsi::inline`).
            let req = CommandRequest {
                cdb: long_cdb.as_deref().unwrap_or(&cmd.cdb),
                edtl: cmd.edtl,
                read: cmd.read,
                write: cmd.write,
                data_out: &data_out,
            };
            if let Some(outcome) = target.luns.execute_if_cheap(lun, nexus, &req) {
                // A reset (or PREEMPT AND ABORT) meanwhile aborted it.
                if target.luns.task_epoch(lun, nexus.id) == epoch {
                    let _ = self.tx.send(response_pdus(&cmd, outcome, &params));
                }
                return;
            }
        }
        self.tasks.running.lock().insert(
            cmd.itt,
            RunningTask {
                lun,
                aborted: false,
                epoch,
            },
        );
        let luns = target.luns.clone();
        let nexus = self.nexus.clone().expect("normal sessions have a nexus");
        let tx = self.tx.clone();
        let tasks = self.tasks.clone();
        // One hop to a blocking thread, which also queues the answer.
        tokio::task::spawn_blocking(move || {
            let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let req = CommandRequest {
                    cdb: long_cdb.as_deref().unwrap_or(&cmd.cdb),
                    edtl: cmd.edtl,
                    read: cmd.read,
                    write: cmd.write,
                    data_out: &data_out,
                };
                luns.execute(lun, &nexus, &req)
            }));
            let outcome = run.unwrap_or_else(|_| {
                warn!("SCSI command panicked");
                target_failure_outcome()
            });
            let out = response_pdus(&cmd, outcome, &params);
            {
                // Decide and answer under the task lock, so an ABORT TASK
                // either finds the task (and its answer is never sent) or
                // finds it gone (its answer is already queued, ahead of the
                // TMF response).
                let mut running = tasks.running.lock();
                if running
                    .remove(&cmd.itt)
                    .is_some_and(|t| !t.aborted && luns.task_epoch(lun, nexus.id) == t.epoch)
                {
                    let _ = tx.send(out);
                }
            }
            tasks.done.notify_waiters();
        });
    }

    fn task_mgmt(&mut self, t: TaskMgmtRequest, ctx: &FfpContext) -> Option<FfpEnd> {
        let lun = scsi::decode_lun(t.lun).unwrap_or(u64::MAX);
        let lun_exists = ctx
            .target
            .as_ref()
            .map(|tg| tg.luns.get(lun).is_some())
            .unwrap_or(false);
        let mut end = None;
        let response = match t.function {
            TmfFunction::AbortTask => {
                let tag = t.referenced_tag;
                let found_collecting = self.collecting.remove(&tag).is_some();
                let found_running = self
                    .tasks
                    .running
                    .lock()
                    .get_mut(&tag)
                    .map(|r| r.aborted = true)
                    .is_some();
                let exp = self.window.exp_cmdsn.load(Ordering::SeqCst);
                let max = self.window.max_cmdsn.load(Ordering::SeqCst);
                let in_window = !pdu::sn_lt(t.ref_cmdsn, exp) && !pdu::sn_lt(max, t.ref_cmdsn);
                if found_collecting || found_running {
                    TmfResponse::Complete
                } else if in_window && pdu::sn_lt(t.ref_cmdsn, t.cmdsn) {
                    // RFC 7143 11.5.1 b): not received yet, but its CmdSN
                    // is in the window and before this request's.
                    TmfResponse::Complete
                } else {
                    // c): received and already answered (its CmdSN is
                    // below the window), or unknown.
                    TmfResponse::TaskDoesNotExist
                }
            }
            TmfFunction::AbortTaskSet | TmfFunction::ClearTaskSet => {
                if !lun_exists {
                    TmfResponse::LunDoesNotExist
                } else {
                    self.abort_lun(lun);
                    TmfResponse::Complete
                }
            }
            TmfFunction::LogicalUnitReset => {
                if !lun_exists {
                    TmfResponse::LunDoesNotExist
                } else {
                    self.abort_lun(lun);
                    if let (Some(tg), Some(nexus)) = (&ctx.target, &ctx.nexus) {
                        if let Some(lu) = tg.luns.get(lun) {
                            lu.reset(scsi::ResetKind::LogicalUnit, nexus);
                        }
                    }
                    TmfResponse::Complete
                }
            }
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                self.abort_all();
                if let (Some(tg), Some(nexus)) = (&ctx.target, &ctx.nexus) {
                    let kind = if t.function == TmfFunction::TargetColdReset {
                        scsi::ResetKind::TargetCold
                    } else {
                        scsi::ResetKind::TargetWarm
                    };
                    for l in tg.luns.luns().collect::<Vec<_>>() {
                        if let Some(lu) = tg.luns.get(l) {
                            lu.reset(kind, nexus);
                        }
                    }
                }
                if t.function == TmfFunction::TargetColdReset {
                    end = Some(FfpEnd::ColdReset);
                }
                TmfResponse::Complete
            }
            TmfFunction::ClearAca => TmfResponse::NotSupported,
            TmfFunction::TaskReassign => TmfResponse::ReassignmentNotSupported,
            TmfFunction::Other(_) => TmfResponse::Rejected,
        };
        info!(session = %ctx.label, function = ?t.function, ?response, "task management");
        self.send(
            TargetPdu::TaskMgmtResponse {
                itt: t.itt,
                response,
            },
            Bytes::new(),
        );
        end
    }

    fn abort_lun(&mut self, lun: u64) {
        self.collecting.retain(|_, c| c.lun != lun);
        for t in self.tasks.running.lock().values_mut() {
            if t.lun == lun {
                t.aborted = true;
            }
        }
    }

    fn abort_all(&mut self) {
        self.collecting.clear();
        for t in self.tasks.running.lock().values_mut() {
            t.aborted = true;
        }
    }

    async fn logout(&mut self, l: pdu::LogoutRequest, ctx: &FfpContext) -> Step {
        let response = match l.reason {
            LogoutReason::CloseSession | LogoutReason::CloseConnection => 0,
            // Connection recovery needs ErrorRecoveryLevel 2.
            LogoutReason::RemoveConnectionForRecovery => 2,
            LogoutReason::Other(_) => 2,
        };
        // Let running commands answer first (bounded).
        self.collecting.clear();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.tasks.done.notified();
            if self.tasks.running.lock().is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                warn!(session = %ctx.label, "commands still running at logout");
                break;
            }
        }
        // The nexus ends before the initiator hears so: a reservation it
        // held is gone by the time it (or anyone) sends the next command.
        if response == 0 {
            if let (Some(t), Some(n)) = (&ctx.target, &ctx.nexus) {
                t.luns.nexus_lost(n.id);
            }
        }
        self.send(
            TargetPdu::LogoutResponse {
                itt: l.itt,
                response,
                time2wait: 0,
                time2retain: 0,
            },
            Bytes::new(),
        );
        info!(session = %ctx.label, reason = ?l.reason, "logout");
        Ok(Some(FfpEnd::Logout))
    }
}

/// The extended CDB carried in an AHS of type 1, if any.
fn extended_cdb(ahs: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while at + 4 <= ahs.len() {
        let len = u16::from_be_bytes([ahs[at], ahs[at + 1]]) as usize;
        let kind = ahs[at + 2];
        let body_start = at + 3;
        let body_end = body_start.checked_add(len)?;
        if body_end > ahs.len() {
            return None;
        }
        if kind == 1 && len > 1 {
            return Some(&ahs[body_start + 1..body_end]);
        }
        at = (body_end + 3) & !3;
    }
    None
}

/// A CHECK CONDITION answer the transport itself gives (fixed format).
fn check_condition(sense: Sense) -> CommandOutcome {
    CommandOutcome {
        status: scsi::status::CHECK_CONDITION,
        sense: Some(sense.fixed()),
        ..Default::default()
    }
}

/// A transfer larger than any command may ask for: INVALID FIELD IN CDB.
fn too_large_outcome() -> CommandOutcome {
    check_condition(Sense::new(sense::key::ILLEGAL_REQUEST, 0x24, 0x00))
}

/// Data-Out out of sequence: ABORTED COMMAND / DATA PHASE ERROR.
fn data_phase_error_outcome() -> CommandOutcome {
    check_condition(Sense::new(sense::key::ABORTED_COMMAND, 0x4b, 0x00))
}

/// The command's worker died: HARDWARE ERROR / INTERNAL TARGET FAILURE.
fn target_failure_outcome() -> CommandOutcome {
    check_condition(Sense::internal())
}

impl Out {
    /// Appends a PDU; the first stays a single `Out::One`.
    fn push(out: &mut Option<Out>, pdu: TargetPdu, data: Bytes) {
        *out = Some(match out.take() {
            None => Out::One(pdu, data),
            Some(Out::One(p, d)) => Out::Pdus(vec![(p, d), (pdu, data)]),
            Some(Out::Pdus(mut list)) => {
                list.push((pdu, data));
                Out::Pdus(list)
            }
        });
    }
}

/// Builds the Data-In PDUs and the response for a finished command; a
/// single PDU (the usual case) is queued without a list.
fn response_pdus(cmd: &ScsiCommand, outcome: CommandOutcome, params: &TransportParams) -> Out {
    let edtl = cmd.edtl;
    let residual = Residual::of(edtl, outcome.transfer_len);
    let mut data = outcome.data_in.freeze();
    if data.len() > edtl as usize {
        data.truncate(edtl as usize);
    }
    let mut out = None;
    let mut count = 0u32;
    let collapse =
        outcome.status == scsi::status::GOOD && outcome.sense.is_none() && !data.is_empty();
    if !data.is_empty() {
        let seg = params.max_xmit_dsl.max(512) as usize;
        let burst = params.max_burst_length.max(seg as u32) as usize;
        let total = data.len();
        let mut offset = 0usize;
        while offset < total {
            let burst_end = ((offset / burst) + 1) * burst;
            let len = seg.min(total - offset).min(burst_end - offset);
            let last = offset + len == total;
            let chunk = data.slice(offset..offset + len);
            Out::push(
                &mut out,
                TargetPdu::DataIn {
                    lun: cmd.lun,
                    itt: cmd.itt,
                    final_: last || offset + len == burst_end,
                    status: if last && collapse {
                        Some(outcome.status)
                    } else {
                        None
                    },
                    residual,
                    datasn: count,
                    buffer_offset: offset as u32,
                },
                chunk,
            );
            count = count.wrapping_add(1);
            offset += len;
        }
        if collapse {
            if let Some(out) = out {
                return out;
            }
        }
    }
    let sense = outcome
        .sense
        .map(|s| pdu::sense_segment(&s))
        .unwrap_or_default();
    Out::push(
        &mut out,
        TargetPdu::ScsiResponse {
            itt: cmd.itt,
            response: 0,
            status: outcome.status,
            residual,
            exp_datasn: count,
        },
        sense,
    );
    out.unwrap_or(Out::Pdus(Vec::new()))
}

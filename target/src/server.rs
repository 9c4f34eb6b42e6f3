//! The iSCSI server: listening portals, the login phase of each new
//! connection, the table of live sessions (reinstatement by initiator name +
//! ISID), and orderly shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::connection::{Digests, FrameReader, FrameWriter, OutFrame};
use crate::discovery::TextExchange;
use crate::login::{
    LoginDirectory, LoginMachine, LoginOutcome, LoginSettings, LoginStep, SessionType,
    TargetLoginInfo,
};
use crate::pdu::{InitiatorPdu, TargetPdu, TargetSeq};
use crate::scsi::{LunMap, Nexus, TargetPort};
use crate::session::{self, FfpContext, FfpEnd, FfpSettings, TargetRuntime, TransportParams};

/// One target the server exposes.
pub struct TargetEntry {
    pub login: TargetLoginInfo,
    pub luns: Arc<LunMap>,
}

/// Server-wide settings.
#[derive(Clone, Default)]
pub struct ServerSettings {
    pub login: LoginSettings,
    pub ffp: FfpSettings,
    /// CHAP required on discovery sessions, if any.
    pub discovery_chap: Option<crate::login::ChapPolicy>,
    /// A login must complete within this time.
    pub login_timeout: Option<Duration>,
}

/// The targets and how logins find them.
pub struct Directory {
    targets: Vec<TargetEntry>,
    discovery_chap: Option<crate::login::ChapPolicy>,
}

impl Directory {
    fn entry(&self, name: &str) -> Option<&TargetEntry> {
        self.targets.iter().find(|t| t.login.name == name)
    }
}

fn portal_matches(portals: &[SocketAddr], local: SocketAddr) -> bool {
    portals
        .iter()
        .any(|p| p.port() == local.port() && (p.ip().is_unspecified() || p.ip() == local.ip()))
}

impl LoginDirectory for Directory {
    fn target(&self, name: &str, local_addr: SocketAddr) -> Option<TargetLoginInfo> {
        self.targets
            .iter()
            .find(|t| t.login.name == name && portal_matches(&t.login.portals, local_addr))
            .map(|t| t.login.clone())
    }

    fn targets(&self, local_addr: SocketAddr) -> Vec<TargetLoginInfo> {
        self.targets
            .iter()
            .filter(|t| portal_matches(&t.login.portals, local_addr))
            .map(|t| t.login.clone())
            .collect()
    }

    fn discovery_auth(&self) -> Option<crate::login::ChapPolicy> {
        self.discovery_chap.clone()
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    initiator: String,
    isid: [u8; 6],
    target: String,
}

struct SessionRecord {
    tsih: u16,
    nexus_id: u64,
    close: watch::Sender<bool>,
    /// Becomes true when the session's connection has ended.
    ended: watch::Receiver<bool>,
}

/// The iSCSI server.
pub struct Server {
    directory: Arc<Directory>,
    settings: ServerSettings,
    sessions: Mutex<HashMap<SessionKey, SessionRecord>>,
    next_tsih: Mutex<u16>,
    next_nexus: AtomicU64,
}

impl Server {
    /// A server for `targets`.
    pub fn new(targets: Vec<TargetEntry>, settings: ServerSettings) -> Arc<Server> {
        // Announce every target port to its LUNs, so REPORT TARGET PORT
        // GROUPS lists them before any session arrives through them.
        for t in &targets {
            t.luns.add_target_port(&TargetPort {
                target_name: t.login.name.clone(),
                tpgt: t.login.portal_group_tag,
                relative_port_id: 1,
            });
        }
        Arc::new(Server {
            directory: Arc::new(Directory {
                targets,
                discovery_chap: settings.discovery_chap.clone(),
            }),
            settings,
            sessions: Mutex::new(HashMap::new()),
            next_tsih: Mutex::new(1),
            next_nexus: AtomicU64::new(1),
        })
    }

    /// The LUN maps, for flushing at shutdown.
    pub fn lun_maps(&self) -> Vec<Arc<LunMap>> {
        self.directory
            .targets
            .iter()
            .map(|t| t.luns.clone())
            .collect()
    }

    /// Accepts connections on `listeners` until `shutdown` becomes true,
    /// then closes every session (waiting a bounded time for them).
    pub async fn serve(
        self: Arc<Self>,
        listeners: Vec<TcpListener>,
        shutdown: watch::Receiver<bool>,
    ) {
        let mut conns = JoinSet::new();
        let mut accepts = JoinSet::new();
        let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<(TcpStream, SocketAddr)>(64);
        for l in listeners {
            let tx = conn_tx.clone();
            let mut stop = shutdown.clone();
            accepts.spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        r = l.accept() => match r {
                            Ok((s, peer)) => { if tx.send((s, peer)).await.is_err() { return; } }
                            Err(e) => {
                                warn!(error = %e, "accept failed");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            });
        }
        drop(conn_tx);
        let mut stop = shutdown.clone();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                c = conn_rx.recv() => match c {
                    Some((stream, peer)) => {
                        let me = self.clone();
                        let sd = shutdown.clone();
                        conns.spawn(async move { me.connection(stream, peer, sd).await });
                    }
                    None => break,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        accepts.abort_all();
        info!("shutting down: closing sessions");
        for rec in self.sessions.lock().values() {
            let _ = rec.close.send(true);
        }
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            warn!("connections still open after 10 s; aborting them");
            conns.abort_all();
        }
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        let (rd, wr) = stream.into_split();
        let mut reader = FrameReader::new(rd);
        let mut writer = FrameWriter::new(wr);
        let timeout = self
            .settings
            .login_timeout
            .unwrap_or(Duration::from_secs(30));
        let login = tokio::select! {
            _ = shutdown.changed() => return,
            r = tokio::time::timeout(timeout, self.login(&mut reader, &mut writer, peer, local)) => r,
        };
        let (outcome, statsn, slot) = match login {
            Err(_) => {
                warn!(%peer, "login did not finish in {timeout:?}; closing the connection");
                writer.shutdown().await;
                return;
            }
            Ok(Err(reason)) => {
                warn!(%peer, %reason, "login failed; closing the connection");
                writer.shutdown().await;
                return;
            }
            Ok(Ok(x)) => x,
        };
        self.full_feature(reader, writer, outcome, statsn, slot, peer, local, shutdown)
            .await;
    }

    /// Runs the login phase. Returns the outcome, the next StatSN, and the
    /// session slot (normal sessions).
    async fn login(
        &self,
        reader: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>,
        writer: &mut FrameWriter<tokio::net::tcp::OwnedWriteHalf>,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Result<(LoginOutcome, u32, SessionSlot), String> {
        let directory: Arc<dyn LoginDirectory> = self.directory.clone();
        let mut machine = LoginMachine::new(directory, local, self.settings.login.clone());
        let mut statsn: u32 = rand::random::<u32>() >> 1;
        let window = self.settings.ffp.cmd_window.max(1);
        loop {
            let header = reader.read_header().await.map_err(|e| e.to_string())?;
            let req = match InitiatorPdu::decode(&header.bhs) {
                Ok(InitiatorPdu::Login(r)) => r,
                Ok(other) => {
                    return Err(format!(
                        "expected a Login Request, got {:?}",
                        std::mem::discriminant(&other)
                    ))
                }
                Err(e) => return Err(format!("undecodable PDU before login: {e}")),
            };
            let data = reader
                .read_data(header.data_len, 65536)
                .await
                .map_err(|e| e.to_string())?;
            let seq = TargetSeq {
                statsn,
                exp_cmdsn: req.cmdsn,
                max_cmdsn: req.cmdsn.wrapping_add(window - 1),
            };
            match machine.step(&req, &data) {
                LoginStep::Continue { response, data } => {
                    send_one(writer, &response, seq, data).await?;
                    statsn = statsn.wrapping_add(1);
                }
                LoginStep::Fail {
                    response,
                    data,
                    reason,
                } => {
                    let _ = send_one(writer, &response, seq, data).await;
                    return Err(format!("{reason} (peer {peer})"));
                }
                LoginStep::Complete {
                    mut response,
                    data,
                    outcome,
                } => {
                    let slot = match self.register(&outcome) {
                        Ok((slot, old)) => {
                            if let Some(mut old) = old {
                                // Let the reinstated session finish closing.
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(5),
                                    old.wait_for(|ended| *ended),
                                )
                                .await;
                            }
                            slot
                        }
                        Err((class, detail, why)) => {
                            let failed = failure_response(&response, class, detail);
                            let _ = send_one(writer, &failed, seq, Bytes::new()).await;
                            return Err(why);
                        }
                    };
                    if let TargetPdu::LoginResponse { tsih, .. } = &mut response {
                        *tsih = slot.tsih;
                    }
                    send_one(writer, &response, seq, data).await?;
                    statsn = statsn.wrapping_add(1);
                    return Ok((outcome, statsn, slot));
                }
            }
        }
    }

    fn alloc_tsih(&self) -> u16 {
        let mut next = self.next_tsih.lock();
        let t = *next;
        *next = if *next == u16::MAX { 1 } else { *next + 1 };
        t
    }

    /// Finds or creates the session a completed login joins, closing any
    /// session it reinstates.
    #[allow(clippy::type_complexity)]
    fn register(
        &self,
        outcome: &LoginOutcome,
    ) -> Result<(SessionSlot, Option<watch::Receiver<bool>>), (u8, u8, String)> {
        let nexus_id = self.next_nexus.fetch_add(1, Ordering::Relaxed);
        if outcome.session_type == SessionType::Discovery {
            let slot = SessionSlot {
                key: None,
                tsih: self.alloc_tsih(),
                nexus_id,
                close: watch::channel(false).1,
                ended: watch::channel(false).0,
            };
            return Ok((slot, None));
        }
        let key = SessionKey {
            initiator: outcome.initiator_name.clone(),
            isid: outcome.isid,
            target: outcome.target_name.clone().unwrap_or_default(),
        };
        let mut sessions = self.sessions.lock();
        let old_ended = sessions.get(&key).map(|r| r.ended.clone());
        let tsih = if outcome.tsih != 0 {
            match sessions.get(&key) {
                Some(rec) if rec.tsih == outcome.tsih => {
                    // Connection reinstatement into the same session.
                    let _ = rec.close.send(true);
                    rec.tsih
                }
                _ => {
                    return Err((
                        0x02,
                        0x0a,
                        format!(
                            "login names TSIH {} which is not a session of {}",
                            outcome.tsih, key.initiator
                        ),
                    ))
                }
            }
        } else {
            if let Some(old) = sessions.get(&key) {
                info!(initiator = %key.initiator, isid = ?key.isid, tsih = old.tsih,
                    "session reinstatement: closing the old session");
                let _ = old.close.send(true);
            }
            self.alloc_tsih()
        };
        let (close_tx, close_rx) = watch::channel(false);
        let (ended_tx, ended_rx) = watch::channel(false);
        sessions.insert(
            key.clone(),
            SessionRecord {
                tsih,
                nexus_id,
                close: close_tx,
                ended: ended_rx,
            },
        );
        let slot = SessionSlot {
            key: Some(key),
            tsih,
            nexus_id,
            close: close_rx,
            ended: ended_tx,
        };
        Ok((slot, old_ended))
    }

    #[allow(clippy::too_many_arguments)]
    async fn full_feature(
        &self,
        mut reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
        mut writer: FrameWriter<tokio::net::tcp::OwnedWriteHalf>,
        outcome: LoginOutcome,
        statsn: u32,
        slot: SessionSlot,
        peer: SocketAddr,
        local: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let p = &outcome.params;
        let digests = Digests {
            header: p.header_digest,
            data: p.data_digest,
        };
        reader.digests = digests;
        writer.digests = digests;
        let params = TransportParams {
            max_xmit_dsl: p.max_xmit_data_segment_length,
            max_recv_dsl: p.max_recv_data_segment_length,
            max_burst_length: p.max_burst_length,
            first_burst_length: p.first_burst_length,
            initial_r2t: p.initial_r2t,
            immediate_data: p.immediate_data,
            max_outstanding_r2t: p.max_outstanding_r2t,
        };
        let (target, nexus) = match (&outcome.session_type, &outcome.target_name) {
            (SessionType::Normal, Some(name)) => match self.directory.entry(name) {
                Some(entry) => {
                    let port = Arc::new(TargetPort {
                        target_name: name.clone(),
                        tpgt: entry.login.portal_group_tag,
                        relative_port_id: 1,
                    });
                    let nexus = Nexus {
                        id: slot.nexus_id,
                        initiator_name: outcome.initiator_name.clone(),
                        isid: outcome.isid,
                        target_port: port.clone(),
                    };
                    let rt = Arc::new(TargetRuntime {
                        name: name.clone(),
                        luns: entry.luns.clone(),
                        port,
                    });
                    (Some(rt), Some(nexus))
                }
                None => return,
            },
            _ => (None, None),
        };
        let label = format!(
            "{} isid {} tsih {} from {peer}",
            outcome.initiator_name,
            hex(&outcome.isid),
            slot.tsih
        );
        info!(session = %label, target = ?outcome.target_name, kind = ?outcome.session_type,
            header_digest = p.header_digest, data_digest = p.data_digest,
            max_recv_dsl = p.max_recv_data_segment_length, max_xmit_dsl = p.max_xmit_data_segment_length,
            immediate_data = p.immediate_data, initial_r2t = p.initial_r2t,
            "session in full feature phase");
        let text = Box::new(TextExchange::new(
            self.directory.clone(),
            local,
            outcome.session_type,
            outcome.initiator_name.clone(),
            outcome.target_name.clone(),
            p.max_xmit_data_segment_length,
        ));
        // Close on either the session's own signal or server shutdown.
        let (close_tx, close_rx) = watch::channel(false);
        let mut session_close = slot.close.clone();
        let forward = tokio::spawn(async move {
            tokio::select! {
                _ = became_true(&mut session_close) => {}
                _ = became_true(&mut shutdown) => {}
            }
            let _ = close_tx.send(true);
        });
        let ctx = FfpContext {
            target: target.clone(),
            nexus,
            params,
            settings: self.settings.ffp.clone(),
            first_statsn: statsn,
            exp_cmdsn: outcome.exp_cmdsn,
            text,
            close: close_rx,
            label: label.clone(),
        };
        let end = session::run(reader, writer, ctx).await;
        forward.abort();
        let _ = slot.ended.send(true);
        info!(session = %label, ?end, "session ended");
        if let Some(key) = &slot.key {
            let mut sessions = self.sessions.lock();
            if sessions.get(key).map(|r| r.nexus_id) == Some(slot.nexus_id) {
                sessions.remove(key);
            }
            if end == FfpEnd::ColdReset {
                for (k, rec) in sessions.iter() {
                    if k.target == key.target {
                        let _ = rec.close.send(true);
                    }
                }
            }
        }
        debug!(session = %label, "connection closed");
    }
}

/// Waits until the watched flag is true; never returns if its sender is
/// gone while it is false.
async fn became_true(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Where a logged-in connection belongs in the session table.
pub struct SessionSlot {
    key: Option<SessionKey>,
    tsih: u16,
    nexus_id: u64,
    close: watch::Receiver<bool>,
    ended: watch::Sender<bool>,
}

async fn send_one(
    writer: &mut FrameWriter<tokio::net::tcp::OwnedWriteHalf>,
    pdu: &TargetPdu,
    seq: TargetSeq,
    data: Bytes,
) -> Result<(), String> {
    let bhs = pdu.encode(seq, data.len());
    writer
        .send(&[OutFrame { bhs, data }])
        .await
        .map_err(|e| e.to_string())
}

/// A copy of a final login response turned into a failure.
fn failure_response(resp: &TargetPdu, class: u8, detail: u8) -> TargetPdu {
    match resp.clone() {
        TargetPdu::LoginResponse {
            csg,
            version_max,
            version_active,
            isid,
            itt,
            ..
        } => TargetPdu::LoginResponse {
            transit: false,
            continue_: false,
            csg,
            nsg: csg,
            version_max,
            version_active,
            isid,
            tsih: 0,
            itt,
            status_class: class,
            status_detail: detail,
        },
        other => other,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

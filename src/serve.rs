//! `ironlun serve`: builds LUNs and targets from the configuration, listens,
//! and shuts down cleanly on SIGINT / SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use std::collections::HashMap;

use ironlun_cim::{CimServer, EngineProvider};
use ironlun_cow::{BlockDevice, FileDevice, FileDeviceOptions, Pool, PoolOptions};
use ironlun_replication::{ElementRef, ReplicationService};
use ironlun_target::login::{ChapPolicy, TargetLoginInfo};
use ironlun_target::scsi::{LogicalUnit, LuIdentity, LuOptions, LunMap};
use ironlun_target::server::{Server, ServerSettings, TargetEntry};
use tracing::{error, info};

use crate::config::{
    file_stem, parse_size, Config, LunConfig, PoolConfig, TargetConfig, DEFAULT_POOL,
    DEFAULT_POOL_SIZE,
};
use crate::exposure::{ReplicaExposure, ServedTarget};
use crate::ServeArgs;

/// Runs the server; returns the process exit code.
pub fn run(args: ServeArgs) -> i32 {
    init_logging();
    match serve(args) {
        Ok(()) => 0,
        Err(e) => {
            error!("{e:#}");
            eprintln!("ironlun: {e:#}");
            1
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IRONLUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default(),
    };
    let source = args
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the embedded default".into());
    if !args.iscsi_listen.is_empty() {
        for (i, p) in args.iscsi_listen.iter().enumerate() {
            p.parse::<SocketAddr>().map_err(|_| {
                anyhow!("--iscsi-listen[{i}]: {p:?} is not ADDR:PORT (IPv6 as [::1]:3260)")
            })?;
        }
        for t in &mut cfg.targets {
            t.portals = args.iscsi_listen.clone();
        }
    }
    for t in &mut cfg.targets {
        if t.portals.is_empty() {
            t.portals = vec![crate::config::DEFAULT_PORTAL.to_string()];
        }
    }
    let data_dir = args
        .data_dir
        .clone()
        .or(cfg.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("./ironlun-data"));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    info!(config = %source, data_dir = %data_dir.display(), "starting ironlun");

    let mut pools = Pools {
        configured: cfg.pools.clone(),
        open: HashMap::new(),
        data_dir: data_dir.clone(),
    };
    let (engine, pool_names) = open_engine(&cfg, &mut pools)?;
    engine.set_copy_delay(Duration::from_millis(args.replication_copy_delay_ms));
    let cim_config = cim_config(&args, &cfg, &data_dir)?;
    if let Some(d) = crate::fault::backend_delay() {
        tracing::warn!(
            delay_ms = d.as_millis() as u64,
            "{} is set: every LUN's backend is slowed down (a test aid)",
            crate::fault::BACKEND_DELAY_ENV
        );
    }
    let mut entries = Vec::new();
    // Copy offload (EXTENDED COPY, ROD tokens) reaches every LUN served.
    let copy_domain = ironlun_target::scsi::copy_domain::CopyDomain::new();
    let mut served = Vec::new();
    let mut portals: Vec<SocketAddr> = Vec::new();
    for t in &cfg.targets {
        let (entry, tportals, elements) = build_target(
            t,
            &mut pools,
            &engine,
            args.allow_sanitize,
            args.sanitize_rate_mib << 20,
        )?;
        for p in tportals {
            if !portals.contains(&p) {
                portals.push(p);
            }
        }
        served.push(ServedTarget {
            iqn: t.iqn.clone(),
            luns: entry.luns.clone(),
            elements,
            configured: t.luns.iter().map(|l| l.id).collect(),
        });
        entry.luns.join_copy_domain(
            &copy_domain,
            ironlun_target::scsi::copy_domain::CopyAccess {
                target: entry.login.name.clone(),
                allowed_initiators: entry.login.allowed_initiators.clone(),
                chap: entry.login.chap.is_some(),
            },
        );
        entries.push(entry);
    }
    if cfg.replication.expose_replicas {
        let exposure = ReplicaExposure::start(engine.clone(), served, &data_dir, identity_of)
            .context("replica LUNs (DATA_DIR/replica-luns.json)")?;
        engine.set_observer(Some(exposure));
    } else {
        info!("replicas are not exposed as LUNs ([replication] expose_replicas = false)");
    }

    let discovery_chap = cfg.discovery_chap.as_ref().map(|c| ChapPolicy {
        user: c.user.clone(),
        secret: c.secret.as_bytes().to_vec(),
        mutual: None,
    });
    let login_timeout = args.login_timeout_secs;
    let nop_interval = args.nop_interval_secs;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ironlun")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut listeners = Vec::new();
        for p in &portals {
            let l = tokio::net::TcpListener::bind(p).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    anyhow!("portal {p}: the address is already in use (is another target running? use --iscsi-listen ADDR:PORT)")
                } else {
                    anyhow!("portal {p}: cannot listen: {e}")
                }
            })?;
            info!(portal = %p, "listening for iSCSI");
            listeners.push(l);
        }
        let mut settings = ServerSettings {
            discovery_chap: discovery_chap.clone(),
            ..ServerSettings::default()
        };
        settings.login_timeout = Some(Duration::from_secs(login_timeout.max(1)));
        settings.ffp.nop_interval = Duration::from_secs(nop_interval.max(1));
        settings.ffp.nop_timeout = Duration::from_secs(nop_interval.max(1));
        let server = Server::new(entries, settings);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let cim = match cim_config {
            Some(c) => {
                let wait = c.request_timeout.saturating_sub(Duration::from_secs(10)).max(Duration::from_secs(1));
                let provider = EngineProvider::new(engine.clone(), pool_names, system_name())
                    .with_wait_timeout(wait);
                let cim = CimServer::new(c, Arc::new(provider))
                    .context("CIM-XML server (use --cim-listen ADDR:PORT, --cim-listen-https ADDR:PORT or --no-cim)")?;
                let mut cim_stop = stop_rx.clone();
                Some(tokio::spawn(cim.serve(async move {
                    let _ = cim_stop.wait_for(|s| *s).await;
                })))
            }
            None => None,
        };
        let serving = tokio::spawn(server.clone().serve(listeners, stop_rx));
        wait_for_signal().await;
        info!("signal received: stopping");
        let _ = stop_tx.send(true);
        let _ = serving.await;
        if let Some(c) = cim {
            match c.await {
                Ok(Err(e)) => error!("{e}"),
                Err(e) => error!("CIM-XML server: {e}"),
                Ok(Ok(())) => {}
            }
        }
        for map in server.lun_maps() {
            for lun in map.luns().collect::<Vec<_>>() {
                if let Some(lu) = map.get(lun) {
                    if let Err(e) = lu.device.flush() {
                        error!(lun, error = %e, "flush at shutdown failed");
                    }
                }
            }
        }
        engine.set_observer(None);
        engine.shutdown();
        info!("stopped");
        Ok::<(), anyhow::Error>(())
    })
}

/// The replication engine over every pool the server uses: the configured
/// ones, those LUNs name, and the implicit default pool (when a LUN uses it
/// or it exists). Its state lives in `<data-dir>/replication.json`.
fn open_engine(
    cfg: &Config,
    pools: &mut Pools,
) -> anyhow::Result<(Arc<ReplicationService>, Vec<String>)> {
    let mut used: Vec<String> = Vec::new();
    for t in &cfg.targets {
        for l in t.luns.iter().filter(|l| l.path.is_none()) {
            let n = l.pool.clone().unwrap_or_else(|| DEFAULT_POOL.to_string());
            if !used.contains(&n) {
                used.push(n);
            }
        }
    }
    let mut open = Vec::new();
    for n in &used {
        open.push((n.clone(), pools.get(n)?));
    }
    let mut optional: Vec<String> = cfg.pools.iter().map(|p| p.name.clone()).collect();
    if pools.data_dir.join("pool.img").exists() {
        optional.push(DEFAULT_POOL.to_string());
    }
    for n in optional {
        if used.contains(&n) {
            continue;
        }
        match pools.get(&n) {
            Ok(p) => {
                used.push(n.clone());
                open.push((n, p));
            }
            Err(e) => tracing::warn!("pool {n:?} is not available to replication: {e:#}"),
        }
    }
    let state = pools.data_dir.join("replication.json");
    let engine = ReplicationService::open(open, &state)
        .with_context(|| format!("replication state {}", state.display()))?;
    Ok((engine, used))
}

/// The CIM-XML server configuration, or `None` with `--no-cim`.
fn cim_config(
    args: &ServeArgs,
    cfg: &Config,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<ironlun_cim::CimConfig>> {
    if args.no_cim {
        return Ok(None);
    }
    let mut c = cfg.cim.clone().unwrap_or_default().to_config(data_dir);
    if !args.cim_listen.is_empty() || !args.cim_listen_https.is_empty() {
        let parse = |flag: &str, v: &[String]| -> anyhow::Result<Vec<SocketAddr>> {
            v.iter()
                .map(|a| {
                    a.parse()
                        .map_err(|_| anyhow!("{flag}: {a:?} is not ADDR:PORT (IPv6 as [::1]:5988)"))
                })
                .collect()
        };
        c.http_listen = parse("--cim-listen", &args.cim_listen)?;
        c.https_listen = parse("--cim-listen-https", &args.cim_listen_https)?;
    }
    if c.http_listen.is_empty() && c.https_listen.is_empty() {
        return Ok(None);
    }
    Ok(Some(c))
}

/// The SystemName key of the CIM instances: the host name.
fn system_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ironlun".to_string())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The pools LUNs live in, opened on first use.
struct Pools {
    configured: Vec<PoolConfig>,
    open: HashMap<String, Arc<Pool>>,
    data_dir: PathBuf,
}

fn size_opt(s: &Option<String>) -> anyhow::Result<Option<u64>> {
    s.as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| anyhow!(e))
}

impl Pools {
    fn get(&mut self, name: &str) -> anyhow::Result<Arc<Pool>> {
        if let Some(p) = self.open.get(name) {
            return Ok(p.clone());
        }
        let (path, size, extent) = match self.configured.iter().find(|p| p.name == name) {
            Some(pc) => {
                let path = if pc.path.is_absolute() {
                    pc.path.clone()
                } else {
                    self.data_dir.join(&pc.path)
                };
                (path, size_opt(&pc.size)?, size_opt(&pc.extent_size)?)
            }
            None if name == DEFAULT_POOL => (
                self.data_dir.join("pool.img"),
                Some(DEFAULT_POOL_SIZE),
                None,
            ),
            None => return Err(anyhow!("no pool named {name:?}")),
        };
        let pool = if path.exists() {
            Pool::open(&path).with_context(|| format!("pool {name:?} at {}", path.display()))?
        } else {
            let size = size.ok_or_else(|| {
                anyhow!(
                    "pool {name:?}: {} does not exist and no size is configured to create it",
                    path.display()
                )
            })?;
            let mut opts = PoolOptions {
                size,
                ..PoolOptions::default()
            };
            if let Some(e) = extent {
                opts.extent_size = e as u32;
            }
            info!(pool = name, path = %path.display(), size, extent_size = opts.extent_size, "creating pool");
            Pool::create_with(&path, &opts)
                .with_context(|| format!("pool {name:?}: cannot create {}", path.display()))?
        };
        info!(pool = name, path = %path.display(), info = ?pool.info(), "pool open");
        // Partial extents left by small writes after snapshots get their
        // remaining data while the pool is quiet.
        pool.start_background_fill();
        self.open.insert(name.to_string(), pool.clone());
        Ok(pool)
    }
}

/// The block device behind one LUN (a file, a pool volume or a snapshot),
/// what it is, and the pool element it serves.
fn lun_device(
    t: &TargetConfig,
    l: &LunConfig,
    pools: &mut Pools,
    engine: &ReplicationService,
) -> anyhow::Result<(Arc<dyn BlockDevice>, String, Option<ElementRef>)> {
    let size = size_opt(&l.size)?;
    if let Some(path) = &l.path {
        let dev = FileDevice::open(
            path,
            &FileDeviceOptions {
                block_size: l.block_size,
                size,
                create: false,
                read_only: l.read_only,
            },
        )?;
        return Ok((Arc::new(dev), format!("file {}", path.display()), None));
    }
    let pool_name = l.pool.clone().unwrap_or_else(|| DEFAULT_POOL.to_string());
    let pool = pools.get(&pool_name)?;
    if let Some(snap) = &l.snapshot {
        let dev = pool
            .snapshot_device(snap)
            .with_context(|| format!("snapshot {snap:?} in pool {pool_name:?}"))?;
        return Ok((
            dev,
            format!("pool {pool_name} snapshot {snap} (read-only)"),
            Some(ElementRef::new(pool_name.clone(), snap.clone())),
        ));
    }
    let volume = l
        .volume
        .clone()
        .unwrap_or_else(|| format!("{}-lun{}", file_stem(&t.iqn), l.id));
    let size = size.ok_or_else(|| anyhow!("LUN {} needs a size", l.id))?;
    pool.open_or_create_volume(&volume, size)
        .with_context(|| format!("volume {volume:?} in pool {pool_name:?}"))?;
    // Served through the replication engine's device (write hold for
    // consistent points in time, copy locks, mirror hook).
    let dev = engine
        .device(&ElementRef::new(pool_name.clone(), volume.clone()))
        .with_context(|| format!("volume {volume:?} in pool {pool_name:?}"))?;
    if dev.geometry().block_size != l.block_size {
        return Err(anyhow!(
            "volume {volume:?}: the pool's block size is {}, the LUN asks for {}",
            dev.geometry().block_size,
            l.block_size
        ));
    }
    let element = ElementRef::new(pool_name.clone(), volume.clone());
    Ok((
        dev,
        format!("pool {pool_name} volume {volume}"),
        Some(element),
    ))
}

fn build_target(
    t: &TargetConfig,
    pools: &mut Pools,
    engine: &ReplicationService,
    allow_sanitize: bool,
    sanitize_overwrite_rate: u64,
) -> anyhow::Result<(TargetEntry, Vec<SocketAddr>, Vec<ElementRef>)> {
    let portals: Vec<SocketAddr> = t
        .portals
        .iter()
        .map(|p| {
            p.parse()
                .map_err(|_| anyhow!("portal {p:?} is not ADDR:PORT"))
        })
        .collect::<Result<_, _>>()?;
    let map = LunMap::new();
    let mut elements = Vec::new();
    for l in &t.luns {
        let (device, what, element) = lun_device(t, l, pools, engine)
            .with_context(|| format!("target {} LUN {}", t.iqn, l.id))?;
        elements.extend(element);
        let device = crate::fault::maybe_slow(device);
        let g = device.geometry();
        let device_read_only = device.read_only();
        info!(target = %t.iqn, lun = l.id, backing = %what,
            bytes = g.blocks * g.block_size as u64, block_size = g.block_size, thin = g.thin,
            read_only = l.read_only || device.read_only(), "serving LUN");
        let lu = LogicalUnit::new(
            device,
            identity(&t.iqn, l.id),
            LuOptions {
                read_only: l.read_only || device_read_only,
                removable: l.removable,
                allow_sanitize,
                sanitize_overwrite_rate,
                physical_block_exponent: l.physical_block_exponent(),
                state_dir: Some(pools.data_dir.join("state").join(format!(
                    "{}-lun{}",
                    file_stem(&t.iqn),
                    l.id
                ))),
            },
        );
        map.insert(l.id, Arc::new(lu));
    }
    let chap = t.chap.as_ref().map(|c| ChapPolicy {
        user: c.user.clone(),
        secret: c.secret.as_bytes().to_vec(),
        mutual: t
            .mutual_chap
            .as_ref()
            .map(|m| (m.user.clone(), m.secret.as_bytes().to_vec())),
    });
    let login = TargetLoginInfo {
        name: t.iqn.clone(),
        alias: t.alias.clone(),
        portal_group_tag: t.tpgt,
        portals: portals.clone(),
        allowed_initiators: t.allowed_initiators.clone(),
        chap,
    };
    Ok((
        TargetEntry {
            login,
            luns: Arc::new(map),
        },
        portals,
        elements,
    ))
}

/// FNV-1a, 64 bits: a hash that never changes between builds, so LU
/// identifiers stay stable across restarts and upgrades.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The identity of LUN `lun` of target `iqn`: derived from the names only,
/// so it survives restarts and is the same on every path.
fn identity(iqn: &str, lun: u64) -> LuIdentity {
    identity_of(&format!("{iqn}/lun/{lun}"))
}

/// The identity derived from `key` (a configured LUN's is
/// `<iqn>/lun/<n>`; a replica's names its target and element).
fn identity_of(key: &str) -> LuIdentity {
    let a = fnv1a(key.as_bytes());
    let b = fnv1a(format!("{key}/ext").as_bytes());
    let mut naa = [0u8; 16];
    // NAA 6 (IEEE Registered Extended): 4-bit NAA, 24-bit OUI, 36-bit id,
    // then a 64-bit extension. ironlun has no IEEE OUI of its own; the OUI
    // field holds a fixed value that no LUN identity of ours ever changes.
    let high = (6u64 << 60) | (0x3c_4f1du64 << 36) | (a & 0xf_ffff_ffff);
    naa[..8].copy_from_slice(&high.to_be_bytes());
    naa[8..].copy_from_slice(&b.to_be_bytes());
    LuIdentity {
        vendor: "IRONLUN".into(),
        product: "VIRTUAL-DISK".into(),
        revision: "0001".into(),
        serial: format!("{a:016x}"),
        naa,
    }
}

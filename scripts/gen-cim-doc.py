#!/usr/bin/env python3
"""Generates docs/CIM.md: starts a real `ironlun serve` with CIM-XML on
loopback ports, runs every documented pywbemcli / wbemcli command against it
and pastes the real output (password and ports normalised).

Usage: scripts/gen-cim-doc.py   (IRONLUN_BIN: server binary, default
build/release/ironlun; pywbemcli from <repo>/.venv, wbemcli from PATH)
"""
import os, re, subprocess, sys, time, shutil, socket, tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("IRONLUN_BIN", os.path.join(REPO, "build/release/ironlun"))
RUN = tempfile.mkdtemp(prefix="ironlun-cim-doc-")

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

P_HTTP, P_HTTPS, P_ISCSI = free_port(), free_port(), free_port()
HTTP, HTTPS = f"127.0.0.1:{P_HTTP}", f"127.0.0.1:{P_HTTPS}"
srv = subprocess.Popen([BIN, "serve", "--data-dir", f"{RUN}/data", "--iscsi-listen", f"127.0.0.1:{P_ISCSI}",
                        "--cim-listen", HTTP, "--cim-listen-https", HTTPS],
                       stdout=subprocess.DEVNULL, stderr=open(f"{RUN}/server.log", "w"))
deadline = time.time() + 20
while not os.path.exists(f"{RUN}/data/cim-admin.credential") and time.time() < deadline:
    time.sleep(0.1)
time.sleep(0.5)
PW = open(f"{RUN}/data/cim-admin.credential").read().strip().split(":", 1)[1]

PREAMBLE = r'''unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE        # they override pywbemcli --no-verify
DATA=./ironlun-data                            # what `ironlun serve --data-dir` was given
PW=$(cut -d: -f2 "$DATA/cim-admin.credential")
HTTP=127.0.0.1:5988 HTTPS=127.0.0.1:5989       # --cim-listen / --cim-listen-https
ISCSI=127.0.0.1:3260                           # an iSCSI portal (--iscsi-listen)
NS=root/cimv2/storage/iscsitarget
PY="pywbemcli -s http://$HTTP -u admin -p $PW -d $NS"
WB="http://admin:$PW@$HTTP/$NS"
SVC='MSISCSITARGET_ReplicationService.SystemCreationClassName="CIM_ComputerSystem",SystemName="'"$(hostname)"'",CreationClassName="MSISCSITARGET_ReplicationService",Name="ReplicationService"'
SRC='MSISCSITARGET_StorageVolume.DeviceID="default/default-lun0"'
CAPS='MSISCSITARGET_ReplicationServiceCapabilities.InstanceID="IRONLUN:ReplicationServiceCapabilities"'
# a StorageSynchronized reference by its two volumes' DeviceIDs
sync() { printf 'Synchronization=MSISCSITARGET_StorageSynchronized.SystemElement="MSISCSITARGET_StorageVolume.DeviceID=\\"%s\\"",SyncedElement="MSISCSITARGET_StorageVolume.DeviceID=\\"%s\\""' "$1" "$2"; }
job() { printf 'MSISCSITARGET_ConcreteJob.InstanceID="IRONLUN:job-%s"' "$1"; }
# a group synchronization (CIM_GroupSynchronized) by its group number
gsync() { printf 'Synchronization=CIM_GroupSynchronized.SystemElement="CIM_ReplicationGroup.InstanceID=\\"IRONLUN:group-%s-source\\"",SyncedElement="CIM_ReplicationGroup.InstanceID=\\"IRONLUN:group-%s-target\\""' "$1" "$1"; }
# one SyncPair array element (pywbemcli splits array values at unescaped commas)
pair() { sync "$1" "$2" | cut -d= -f2- | sed 's/",SyncedElement/"\\,SyncedElement/'; }
# an aspect's SettingsDefineState by source DeviceID and aspect number
sds() { printf 'SettingsState=CIM_SettingsDefineState.ManagedElement="MSISCSITARGET_StorageVolume.DeviceID=\\"%s\\"",SettingData="CIM_SynchronizationAspect.InstanceID=\\"IRONLUN:aspect-%s\\""' "$1" "$2"; }'''

RUN_PREAMBLE = PREAMBLE.replace("DATA=./ironlun-data", f"DATA={RUN}/data").replace(
    "HTTP=127.0.0.1:5988 HTTPS=127.0.0.1:5989", f"HTTP={HTTP} HTTPS={HTTPS}").replace(
    "ISCSI=127.0.0.1:3260", f"ISCSI=127.0.0.1:{P_ISCSI}")

env = dict(os.environ)
env["PATH"] = os.path.join(REPO, ".venv/bin") + ":" + env["PATH"]

def sh(cmd):
    r = subprocess.run(["bash", "-c", RUN_PREAMBLE + "\n" + cmd], capture_output=True, text=True, env=env, timeout=120)
    out = (r.stdout + r.stderr).replace(PW, "$PW").replace(RUN + "/data", "$DATA")
    out = out.replace(f":{P_HTTP}", ":5988").replace(f":{P_HTTPS}", ":5989").replace(f":{P_ISCSI}", ":3260")
    return out.strip("\n")

def trim(out, n):
    lines = out.split("\n")
    if n and len(lines) > n:
        lines = lines[:n] + [f"... ({len(lines) - n} more lines)"]
    return "\n".join(lines)

doc = []
def md(t):
    doc.append(t.strip("\n") + "\n")
def ex(cmd, n=0, expect=None):
    out = sh(cmd)
    if expect and expect not in out:
        print(f"UNEXPECTED for {cmd}:\n{out}", file=sys.stderr)
        srv.terminate(); srv.wait()
        sys.exit(1)
    doc.append("```sh\n" + cmd + "\n```\n```text\n" + trim(out, n) + "\n```\n")
    return out

HEAD = r"""# CIM-XML: driving replication with pywbemcli and wbemcli

`ironlun serve` answers CIM-XML (DMTF DSP0200 / DSP0201) so that the
replication methods of the SMI-S / Windows iSCSI Target model
(CreateElementReplica, CreateGroupReplica, CreateSynchronizationAspect,
ModifyReplicaSynchronization, ModifySettingsDefineState) can be run with
`pywbemcli` (PyPI `pywbemtools`) and `wbemcli` (Debian `sblim-wbemcli`).
The CIM layer (`cim-shim/`, `EngineProvider`) only translates; the
replication engine (`replication/`, docs/REPLICATION.md) decides.

Every command below was run against a real `ironlun serve`; the output
under each is what it printed (this file is generated that way; only the
password is replaced by `$PW`, and the ports by the defaults).

## The server

| | |
|---|---|
| HTTP | `127.0.0.1:5988` by default; `--cim-listen ADDR:PORT` (repeatable) |
| HTTPS | `127.0.0.1:5989` by default; `--cim-listen-https ADDR:PORT` (repeatable) |
| | giving either flag makes the listeners exactly those given (`--cim-listen` alone: HTTP only) |
| off | `--no-cim` (the replication engine still runs; its jobs continue) |
| copy rate | `--replication-copy-delay-ms MS`: a pause between batches of background copies (clone copy, resync, restore) |
| config | a `[cim]` section: `http_listen`, `https_listen` (`[]` disables one), `tls_cert` + `tls_key`, `users = [{ name, password }]`, `max_body_bytes`, `request_timeout_secs` |
| credential | without `users`, an `admin` password is generated on first start in `<data-dir>/cim-admin.credential` (mode 0600, `admin:<password>`) |
| certificate | without `tls_cert`, a self-signed one in `<data-dir>/cim-tls-cert.pem` |
| namespace | `root/cimv2/storage/iscsitarget` (and `interop` / `root/interop` with the Replication Services profile) |
| engine state | `<data-dir>/replication.json` |

The engine covers every pool the server uses (configured `[[pool]]`s and
the implicit `default` pool in `<data-dir>/pool.img`); LUNs on pool volumes
are served through the engine's device, so points in time are consistent
with initiator writes.

A replica is a volume (or snapshot) in the pool, and it is served at once:
the target that serves the source gets it as a new LUN under the next free
LUN number (a snapshot read-only), and every session of that target gets
the unit attention REPORTED LUNS DATA HAS CHANGED (6/3F/0E), so initiators
rescan (Linux: `iscsiadm -m session -R`, or the kernel does it on the unit
attention). A replica deleted (Return To ResourcePool) or whose point in
time is discarded (Deactivate) loses its LUN, with the same unit
attention; a re-taken point in time (Resync Replica) stays under its
number. The numbers are kept in `<data-dir>/replica-luns.json`, so a
replica keeps its LUN across restarts; a replica whose relationship ended
(Detach, Dissolve) keeps its LUN while the volume exists. The server log
says `serving replica as LUN target=... lun=N element=pool/name`. Turn it
off with `[replication] expose_replicas = false` in the config; then serve
a replica by naming it in the config (`volume = "clone1"` or
`snapshot = "snap1"`) or export it with `ironlun volume export POOL NAME RAW`.

Names: a volume's DeviceID is `<pool>/<volume or snapshot>`; jobs are
`IRONLUN:job-<n>`, aspects `IRONLUN:aspect-<n>`, pools `IRONLUN:pool-<name>`,
the two sides of group synchronization `n` are the ReplicationGroups
`IRONLUN:group-<n>-source` / `-target`, and a group made by CreateGroup is
`IRONLUN:group-<n>-elements`. References may carry only some keys
(e.g. only `DeviceID`); pywbemcli accepts such short instance names for the
method target too, wbemcli wants all keys of the object it calls.

Return codes: 0 done, 4096 job started (with `Job`), 1 not supported,
3 WaitForCopyState timed out (the job goes on; the wait is bounded below
the request time limit), 4 failed, 5 invalid parameter, 6 in use. The
reason for a non-zero code is logged by the server (`CIM method refused
... why=...`).

Set up a shell (pywbemcli from the repo's `.venv`, or `pip install pywbemtools`):
"""
TAIL = r"""## Not yet

- Remote replication (SourceAccessPoint / TargetAccessPoint,
  ConnectivityCollection): 1 Not Supported.
- TargetGroup of ModifySettingsDefineState: 1 Not Supported (give
  TargetElement or TargetPool).
- The reason for a 5 Invalid Parameter is in the server log only; no
  CIM_Error instance is returned with the method's answer.
- Attach To Target makes a writable cow clone of the point in time (cow
  cannot give the hidden snapshot a second, read-only name yet).
"""
md(HEAD)
md("```sh\n" + PREAMBLE + "\n```\n")
md("## Discover\n\nVolumes (every pool volume and visible snapshot; DeviceID is `<pool>/<name>`):")
ex('$PY instance enumerate CIM_StorageVolume --names-only', expect="default/default-lun0")
ex('wbemcli ein "$WB:CIM_StorageVolume"', expect="default-lun0")
md("Over HTTPS with the generated self-signed certificate:")
ex('pywbemcli -s https://$HTTPS --no-verify -u admin -p $PW -d $NS instance get "$SRC"', expect="NumberOfBlocks")
ex('wbemcli -cacert "$DATA/cim-tls-cert.pem" ein "https://admin:$PW@$HTTPS/$NS:MSISCSITARGET_ReplicationService"', expect="ReplicationService")
md("The pool, the service and its capabilities (published from the engine's state table):")
ex('$PY instance enumerate MSISCSITARGET_StoragePool', expect="IRONLUN:pool-default")
ex('$PY instance associators "$SVC" --assoc-class CIM_ElementCapabilities', expect="SupportedSyncTypes")
md("""`GetSupportedOperations` answers from the engine's Operation x CopyState table
(here: Clone, 11 = Async Clone Local, in CopyState 4 Synchronized):""")
ex('$PY instance invokemethod "$CAPS" GetSupportedOperations -p ReplicationType=11 -p CopyState=4', expect="ReturnValue=0")
ex('$PY instance invokemethod "$CAPS" GetSupportedCopyStates -p ReplicationType=7', expect="ReturnValue=0")
ex('$PY instance invokemethod "$CAPS" GetSupportedWaitForCopyStates -p ReplicationType=11', expect="ReturnValue=0")
ex('$PY instance invokemethod "$CAPS" GetSupportedConsistency -p ReplicationType=7', expect="ReturnValue=0")
ex('$PY instance invokemethod "$CAPS" ConvertSyncTypeToReplicationType -p SyncType=8 -p Mode=3', expect="ReturnValue=11")

md("## CreateElementReplica\n\nSnapshot (SyncType 7), waiting for Synchronized (answers 0 with the new volume and the Synchronization):")
ex('$PY instance invokemethod "$SVC" CreateElementReplica -p ElementName=snap1 -p SyncType=7 -p "SourceElement=$SRC" -p WaitForCopyState=4', expect="ReturnValue=0")
md("Snapshot through wbemcli, no WaitForCopyState:")
ex('wbemcli cm "$WB:$SVC" "CreateElementReplica.ElementName=\\"snap2\\",SyncType=7,SourceElement=$SRC"', expect="CreateElementReplica: 0")
md("""Clone (SyncType 8) without WaitForCopyState: 4096 and a Job. The clone is
usable at once; the job copies it to independence.""")
out = ex('$PY instance invokemethod "$SVC" CreateElementReplica -p ElementName=clone1 -p SyncType=8 -p "SourceElement=$SRC"', expect="ReturnValue=4096")
jid = re.search(r"IRONLUN:job-(\d+)", out.replace('"\n"', "")).group(1)
time.sleep(1)
md(f"Poll the job (job {jid} here) until JobState 7 Completed with OperationalStatus {{2 OK, 17 Completed}}:")
ex(f'$PY instance get "$(job {jid})"', expect="JobState = 7;")
ex(f'wbemcli gi "$WB:$(job {jid})"', expect="JobState=7")
md("The job's result, as libstoragemgmt finds it (AffectedJobElement → the volume):")
ex(f'$PY instance associators "$(job {jid})" --assoc-class CIM_AffectedJobElement --result-class CIM_StorageVolume --names-only', expect="clone1")
ex(f'$PY instance invokemethod "$(job {jid})" GetErrors', expect="ReturnValue=0")
md("RequestStateChange (2 Start, 3 Suspend, 4 Terminate) on a finished job is 4097 Invalid State Transition:")
ex(f'$PY instance invokemethod "$(job {jid})" RequestStateChange -p RequestedState=4', expect="ReturnValue=4097")
md("""On a running job, RequestStateChange 3 Suspend, 2 Start (resume) and
4 Terminate answer 0 (tests/cim_e2e.rs drives them through wbemcli with
`--replication-copy-delay-ms` so the copy is still running), e.g.
`wbemcli cm "$WB:$(job 5)" RequestStateChange.RequestedState=3`.""")
md("Clone with WaitForCopyState=4 through wbemcli: the call returns 0 once the copy is Synchronized:")
ex('wbemcli cm "$WB:$SVC" "CreateElementReplica.ElementName=\\"clone2\\",SyncType=8,WaitForCopyState=4,SourceElement=$SRC"', expect="CreateElementReplica: 0")
md("The relationships:")
ex('$PY instance get "$(sync default/default-lun0 default/clone2 | cut -d= -f2-)"', expect="CopyState = 4;")
ex('$PY instance references "$SRC" --result-class CIM_StorageSynchronized --names-only', expect="clone1")

md("""Every replica made so far is already a LUN of the target that serves the
source (libiscsi's `iscsi-ls`; LUN 0 is the source):""")
ex('iscsi-ls -s iscsi://$ISCSI', expect="Lun:4")

md("""## ModifyReplicaSynchronization

The Synchronization reference may name its volumes by DeviceID only. Resync
Replica (14) re-takes a snapshot's point in time:""")
ex('$PY instance invokemethod "$SVC" ModifyReplicaSynchronization -p Operation=14 -p "$(sync default/default-lun0 default/snap1)"', expect="ReturnValue=0")
md("An operation the table does not offer for the type (12 Fracture on a snapshot) is 1 Not Supported; see docs/REPLICATION.md for every code:")
ex('$PY instance invokemethod "$SVC" ModifyReplicaSynchronization -p Operation=12 -p "$(sync default/default-lun0 default/snap1)"', expect="ReturnValue=1")
md("Detach (8) a synchronized clone (two independent volumes remain):")
ex('$PY instance invokemethod "$SVC" ModifyReplicaSynchronization -p Operation=8 -p "$(sync default/default-lun0 default/clone1)"', expect="ReturnValue=0")
md("Return To ResourcePool (19) deletes a snapshot, through wbemcli (nested references):")
ex('wbemcli cm "$WB:$SVC" "ModifyReplicaSynchronization.Operation=19,Synchronization=MSISCSITARGET_StorageSynchronized.SystemElement=$SRC,SyncedElement=MSISCSITARGET_StorageVolume.DeviceID=\\"default/snap2\\""', expect="ModifyReplicaSynchronization: 0")
md("Its LUN (2) is gone from the target:")
ex('iscsi-ls -s iscsi://$ISCSI', expect="Lun:3")

md("""## Mirror (SyncType 6)

A synchronous mirror, waiting until the initial copy is done; the target then
follows every write of the source (and refuses initiator writes while the
mirror flows):""")
ex('$PY instance invokemethod "$SVC" CreateElementReplica -p ElementName=mirror1 -p SyncType=6 -p Mode=2 -p "SourceElement=$SRC" -p WaitForCopyState=4', expect="ReturnValue=0")
md("Fracture (12) stops the flow and tracks changes on both sides; Resync Replica (14) copies only what changed, here waiting for Synchronized:")
ex('$PY instance invokemethod "$SVC" ModifyReplicaSynchronization -p Operation=12 -p "$(sync default/default-lun0 default/mirror1)"', expect="ReturnValue=0")
ex('$PY instance invokemethod "$SVC" ModifyReplicaSynchronization -p Operation=14 -p "$(sync default/default-lun0 default/mirror1)" -p WaitForCopyState=4', expect="ReturnValue=0")
md("Reset To Async (18) switches the mode; the StorageSynchronized shows it:")
ex('$PY instance invokemethod "$SVC" ModifyReplicaSynchronization -p Operation=18 -p "$(sync default/default-lun0 default/mirror1)"', expect="ReturnValue=0")
ex('$PY instance get "$(sync default/default-lun0 default/mirror1 | cut -d= -f2-)"', n=12, expect="Mode = 3;")

md("""## CreateGroupReplica

One source, two point-in-time copies (`<RelationshipName>_1`, `_2`), taken at one instant (Consistency 3):""")
out = ex('$PY instance invokemethod "$SVC" CreateGroupReplica -p RelationshipName=nightly -p SyncType=7 -p "SourceElement=$SRC" -p TargetElementCount=2 -p Consistency=3', expect="ReturnValue=0")
gid = re.search(r"IRONLUN:group-(\d+)", out.replace('"\n"', "")).group(1)
ex('$PY instance enumerate CIM_GroupSynchronized', n=14, expect="CopyState = 4;")
ex(f'$PY instance associators "CIM_ReplicationGroup.InstanceID=\\"IRONLUN:group-{gid}-target\\"" --assoc-class CIM_OrderedMemberOfCollection --names-only', expect="nightly_1")
md("Operations on the group synchronization apply to every member (here Resync Replica: both copies re-taken at one instant):")
ex(f'$PY instance invokemethod "$SVC" ModifyReplicaSynchronization -p Operation=14 -p "$(gsync {gid})"', expect="ReturnValue=0")

md("RemoveSyncPair (13) takes a member out of the group (it stays a relationship of its own); AddSyncPair (5) puts it back:")
ex(f'$PY instance invokemethod "$SVC" ModifyReplicaSynchronization -p Operation=13 -p "$(gsync {gid})" -p "SyncPair=$(pair default/default-lun0 default/nightly_2)"', expect="ReturnValue=0")
ex(f'$PY instance associators "CIM_ReplicationGroup.InstanceID=\\"IRONLUN:group-{gid}-target\\"" --assoc-class CIM_OrderedMemberOfCollection --names-only', expect="nightly_1")
ex(f'$PY instance invokemethod "$SVC" ModifyReplicaSynchronization -p Operation=5 -p "$(gsync {gid})" -p "SyncPair=$(pair default/default-lun0 default/nightly_2)"', expect="ReturnValue=0")

md("""A TargetGroup: CreateGroup makes a group of existing volumes (here the
detached clone1); as the TargetGroup of CreateGroupReplica its members
become the targets, in order (Clone or Mirror; one member per source
element):""")
out = ex('$PY instance invokemethod "$SVC" CreateGroup -p GroupName=targets -p "Members=MSISCSITARGET_StorageVolume.DeviceID=\\"default/clone1\\""', expect="ReturnValue=0")
tg = re.search(r"IRONLUN:group-(\d+)-elements", out.replace('"\n"', "")).group(1)
ex('$PY instance enumerate CIM_ReplicationGroup --names-only', expect="-elements")
ex(f'$PY instance invokemethod "$SVC" CreateGroupReplica -p RelationshipName=onto -p SyncType=8 -p "SourceElement=$SRC" -p \'TargetGroup=CIM_ReplicationGroup.InstanceID="IRONLUN:group-{tg}-elements"\' -p WaitForCopyState=4', expect="ReturnValue=0")
md("""A TargetGroup whose member count differs from the source elements' is 5
(the log says `why=TargetGroup: 1 elements for 2 source elements ...`);
here the source group of the nightly snapshots has two members:""")
ex(f'$PY instance invokemethod "$SVC" CreateGroupReplica -p RelationshipName=bad -p SyncType=8 -p \'SourceGroup=CIM_ReplicationGroup.InstanceID="IRONLUN:group-{gid}-source"\' -p \'TargetGroup=CIM_ReplicationGroup.InstanceID="IRONLUN:group-{tg}-elements"\'', expect="ReturnValue=5")
md("DeleteGroup forgets a group made by CreateGroup (its volumes stay):")
ex(f'$PY instance invokemethod "$SVC" DeleteGroup -p \'ReplicationGroup=CIM_ReplicationGroup.InstanceID="IRONLUN:group-{tg}-elements"\'', expect="ReturnValue=0")

md("""## CreateSynchronizationAspect and ModifySettingsDefineState

A point in time with no target, linked to its source by a SettingsDefineState:""")
out = ex('$PY instance invokemethod "$SVC" CreateSynchronizationAspect -p Name=pit1 -p SyncType=7 -p "SourceElement=$SRC"', expect="ReturnValue=0")
aid = re.search(r"IRONLUN:aspect-(\d+)", out.replace('"\n"', "")).group(1)
ex('$PY instance enumerate CIM_SynchronizationAspect', expect="pit1")
md("Copy To Target (5) into the pool (the target is `<aspect name>_1`), waiting for Synchronized:")
ex(f'$PY instance invokemethod "$SVC" ModifySettingsDefineState -p Operation=5 -p "$(sds default/default-lun0 {aid})" -p \'TargetPool=MSISCSITARGET_StoragePool.InstanceID="IRONLUN:pool-default"\' -p WaitForCopyState=4', expect="ReturnValue=0")
md("Delete (4) while a copy made from it still shares its data is 6 In Use:")
ex(f'$PY instance invokemethod "$SVC" ModifySettingsDefineState -p Operation=4 -p "$(sds default/default-lun0 {aid})"', expect="ReturnValue=")

md("Restore (7) copies the point in time back onto its source (only the extents changed since); Detach (6) then forgets the aspect and keeps its data:")
ex(f'$PY instance invokemethod "$SVC" ModifySettingsDefineState -p Operation=7 -p "$(sds default/default-lun0 {aid})"', expect="ReturnValue=")
ex(f'$PY instance invokemethod "$SVC" ModifySettingsDefineState -p Operation=6 -p "$(sds default/default-lun0 {aid})"', expect="ReturnValue=")

md("""Attach To Target (8) presents an aspect's point in time on a new target at
once, without a copy: the target (`<aspect name>_1`, or TargetElement) is a
cow clone of the point in time, related to the source as a Clone already
Synchronized, and it becomes a LUN like any replica:""")
out = ex('$PY instance invokemethod "$SVC" CreateSynchronizationAspect -p Name=view -p SyncType=7 -p "SourceElement=$SRC"', expect="ReturnValue=0")
vid = re.search(r"IRONLUN:aspect-(\d+)", out.replace('"\n"', "")).group(1)
ex(f'$PY instance invokemethod "$SVC" ModifySettingsDefineState -p Operation=8 -p "$(sds default/default-lun0 {vid})"', expect="ReturnValue=0")
ex('$PY instance get "$(sync default/default-lun0 default/view_1 | cut -d= -f2-)"', n=12, expect="CopyState = 4;")

md("""## Errors

Parameters are checked before any work: a SyncType not offered is 1, a
volume that does not exist is 5 (the reason is in the server log):""")
ex('$PY instance invokemethod "$SVC" CreateElementReplica -p SyncType=9 -p "SourceElement=$SRC"', expect="ReturnValue=1")
ex('$PY instance invokemethod "$SVC" CreateElementReplica -p SyncType=7 -p \'SourceElement=MSISCSITARGET_StorageVolume.DeviceID="default/nope"\'', expect="ReturnValue=5")
ex('pywbemcli -s http://$HTTP -u admin -p wrong -d $NS instance enumerate CIM_StorageVolume', expect="401")

md(TAIL)
srv.terminate(); srv.wait()
open(os.path.join(REPO, "docs/CIM.md"), "w").write("\n".join(doc))
shutil.rmtree(RUN, ignore_errors=True)
print("ok")

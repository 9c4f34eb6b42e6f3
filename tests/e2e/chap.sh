#!/usr/bin/env bash
# chap.sh - CHAP, mutual CHAP and initiator ACLs, with the libiscsi clients.
#
# One server, one portal, three targets:
#   ...:chap    CHAP (user1 / secret123456)
#   ...:mutual  CHAP + mutual CHAP (the target answers as tgtuser / tgtsecret1234)
#   ...:acl     no CHAP, allowed_initiators = [iqn.2026-11.test:good]
# Checks: the right secret logs in; a wrong secret and no secret fail, with an authentication
# failure status; mutual CHAP logs in when the initiator expects the right target secret and fails
# when it expects another; the ACL'd target is listed by SendTargets to the allowed initiator only,
# and only the allowed initiator logs in.
# Env: E2E_PORT [3313], and see lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init chap
need iscsi-ls iscsi-inq
PORT=${E2E_PORT:-3313}
PORTAL=127.0.0.1:$PORT
CHAP_USER=user1 CHAP_SECRET=secret123456
MUTUAL_USER=tgtuser MUTUAL_SECRET=tgtsecret1234
GOOD=iqn.2026-11.test:good BAD=iqn.2026-11.test:bad

case "$E2E_SERVER" in
ironlun)
  P=iqn.2026-11.org.ironlun; LUN=0
  cat > "$WORK/chap.toml" <<TOML
[[target]]
iqn = "$P:chap"
portals = ["$PORTAL"]
chap = { user = "$CHAP_USER", secret = "$CHAP_SECRET" }
[[target.lun]]
id = 0
size = "64M"

[[target]]
iqn = "$P:mutual"
portals = ["$PORTAL"]
chap = { user = "$CHAP_USER", secret = "$CHAP_SECRET" }
mutual_chap = { user = "$MUTUAL_USER", secret = "$MUTUAL_SECRET" }
[[target.lun]]
id = 0
size = "64M"

[[target]]
iqn = "$P:acl"
portals = ["$PORTAL"]
allowed_initiators = ["$GOOD"]
[[target.lun]]
id = 0
size = "64M"
TOML
  cp "$WORK/chap.toml" "$OUT/chap.toml"
  ironlun_start "$PORT" "$WORK/chap.toml" || { e2e_finish; exit 1; }
  ;;
tgt)
  P=iqn.2026-11.test; LUN=1; CTL=33
  tgt_start "$PORT" "$CTL" || { e2e_finish; exit 1; }
  T=(timeout 10 tgtadm -C "$CTL" --lld iscsi)
  tgt_target "$CTL" 1 "$P:chap" 64M; tgt_bind_all "$CTL" 1
  tgt_target "$CTL" 2 "$P:mutual" 64M; tgt_bind_all "$CTL" 2
  tgt_target "$CTL" 3 "$P:acl" 64M
  "${T[@]}" --op bind --mode target --tid 3 -Q "$GOOD"
  "${T[@]}" --op new --mode account --user "$CHAP_USER" --password "$CHAP_SECRET"
  "${T[@]}" --op new --mode account --user "$MUTUAL_USER" --password "$MUTUAL_SECRET"
  "${T[@]}" --op bind --mode account --tid 1 --user "$CHAP_USER"
  "${T[@]}" --op bind --mode account --tid 2 --user "$CHAP_USER"
  "${T[@]}" --op bind --mode account --tid 2 --user "$MUTUAL_USER" --outgoing
  ;;
*) echo "E2E_SERVER must be ironlun or tgt" >&2; exit 2 ;;
esac

auth_failure() {  # auth_failure NAME CMD... : CMD must fail, and say the login failed for authentication
  local name="$1"; shift
  local f rc=0; f="$OUT/$(echo "$name" | tr -c 'A-Za-z0-9_.-' '_').out"
  timeout -k 5 30 "$@" > "$f" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then fail "$name" "logged in"; return 0; fi
  if [ "$rc" -ge 124 ]; then fail "$name" "timed out (rc=$rc) instead of failing the login"; return 0; fi
  if grep -Eiq 'authentication fail' "$f"; then pass "$name" "rc=$rc: $(grep -Ei -m1 'authentication fail' "$f" | cut -c1-160)"
  else fail "$name" "failed (rc=$rc) but not with an authentication failure: $(head -c 300 "$f" | tr '\n' ' ')"; fi
}

U_CHAP="iscsi://$CHAP_USER%$CHAP_SECRET@$PORTAL/$P:chap/$LUN"
check "CHAP: the right secret logs in (iscsi-inq)" 30 iscsi-inq "$U_CHAP"
check "CHAP: the right secret reads capacity" 30 iscsi-readcapacity16 "$U_CHAP"
auth_failure "CHAP: a wrong secret fails with an authentication failure" \
  iscsi-inq "iscsi://$CHAP_USER%wrongsecret999@$PORTAL/$P:chap/$LUN"
auth_failure "CHAP: a wrong user name fails with an authentication failure" \
  iscsi-inq "iscsi://nosuchuser%$CHAP_SECRET@$PORTAL/$P:chap/$LUN"
check_fails "CHAP: no credentials fails" 30 iscsi-inq "iscsi://$PORTAL/$P:chap/$LUN"
check "CHAP: the right secret logs in again afterwards" 30 iscsi-inq "$U_CHAP"

U_MUT="iscsi://$CHAP_USER%$CHAP_SECRET@$PORTAL/$P:mutual/$LUN"
check "mutual CHAP: both secrets right logs in" 30 \
  iscsi-inq "$U_MUT?target_user=$MUTUAL_USER&target_password=$MUTUAL_SECRET"
check_fails "mutual CHAP: the initiator rejects a target that answers with another secret" 30 \
  iscsi-inq "$U_MUT?target_user=$MUTUAL_USER&target_password=notthetargetsecret"
auth_failure "mutual CHAP: a wrong initiator secret fails with an authentication failure" \
  iscsi-inq "iscsi://$CHAP_USER%wrongsecret999@$PORTAL/$P:mutual/$LUN?target_user=$MUTUAL_USER&target_password=$MUTUAL_SECRET"

# ACL: SendTargets as seen by each initiator name
timeout 30 iscsi-ls -i "$GOOD" "iscsi://$PORTAL" > "$OUT/sendtargets-good.txt" 2>&1 || true
timeout 30 iscsi-ls -i "$BAD" "iscsi://$PORTAL" > "$OUT/sendtargets-bad.txt" 2>&1 || true
if grep -q "^Target:$P:acl " "$OUT/sendtargets-good.txt"; then pass "ACL: SendTargets lists the target to an allowed initiator"
else fail "ACL: SendTargets lists the target to an allowed initiator" "$(head -c 300 "$OUT/sendtargets-good.txt" | tr '\n' ' ')"; fi
if grep -q "^Target:$P:acl " "$OUT/sendtargets-bad.txt"; then fail "ACL: SendTargets hides the target from another initiator" "listed: $(tr '\n' ' ' < "$OUT/sendtargets-bad.txt" | cut -c1-300)"
elif grep -q "^Target:" "$OUT/sendtargets-bad.txt"; then pass "ACL: SendTargets hides the target from another initiator" "still lists the open targets"
else fail "ACL: SendTargets hides the target from another initiator" "discovery itself failed or listed nothing: $(head -c 300 "$OUT/sendtargets-bad.txt" | tr '\n' ' ')"; fi
check "ACL: the allowed initiator logs in" 30 iscsi-inq -i "$GOOD" "iscsi://$PORTAL/$P:acl/$LUN"
check_fails "ACL: another initiator cannot log in" 30 iscsi-inq -i "$BAD" "iscsi://$PORTAL/$P:acl/$LUN"
check_fails "ACL: libiscsi's default initiator name cannot log in" 30 iscsi-inq "iscsi://$PORTAL/$P:acl/$LUN"
e2e_finish

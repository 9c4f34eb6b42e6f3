#!/usr/bin/env bash
# lun-configs.sh IQN PORT - prints an ironlun config with one target IQN on 127.0.0.1:PORT and the
# three LUN configurations some iscsi-test-cu tests need (they skip on the default LUN):
#   LUN 0  4096-byte physical blocks (LBPPB > 1)
#   LUN 1  read_only
#   LUN 2  removable
# Used by tests/e2e/conformance.sh and scripts/conformance-matrix.sh.
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 IQN PORT" >&2; exit 2; }
cat <<TOML
[[target]]
iqn = "$1"
portals = ["127.0.0.1:$2"]
[[target.lun]]
id = 0
size = "256M"
physical_block_size = 4096
[[target.lun]]
id = 1
size = "64M"
read_only = true
[[target.lun]]
id = 2
size = "64M"
removable = true
TOML

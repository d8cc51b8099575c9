#!/usr/bin/env bash
# The main job (make demo): a scratch node with the project's kvm template
# installed as module vm1 and configured. Prints the effective configuration
# and the ports. Grows with each milestone (two nodes and the console next).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d /tmp/safekit-demo.XXXXXX)
export SAFE=$root/opt/safekit SAFEVAR=$root/var/safekit
safekit=$PWD/bin/safekit
mkdir -p "$SAFE/Application_Modules"
cp -r build/Application_Modules/generic "$SAFE/Application_Modules/"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "Scratch node: SAFE=$SAFE SAFEVAR=$SAFEVAR"
step "$safekit" cluster create 192.168.122.11 192.168.122.12
step "$safekit" cluster config
step "$safekit" module install -m vm1 kvm.safe
sed -i 's|<macro name="VM_NAME" value="[^"]*"|<macro name="VM_NAME" value="vm1"|' "$SAFE/modules/vm1/conf/userconfig.xml"
step "$safekit" confcheck -m vm1
step "$safekit" config -m vm1
step "$safekit" module listid
step "$safekit" module getports -m vm1
step "$safekit" confinfo -m vm1
printf '\n\033[1mEffective configuration (%s):\033[0m\n' "$SAFE/private/modules/vm1/conf/safeconf.xml"
cat "$SAFE/private/modules/vm1/conf/safeconf.xml"
printf '\nThe scratch node stays in %s (remove it with rm -rf).\n' "$root"

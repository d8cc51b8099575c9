#!/bin/bash
# vm_lib.sh is sourced by the scripts of the kvm module (start_prim,
# stop_prim, vmcheck); running it does nothing. It needs bash, coreutils
# (timeout, sleep) and virsh, nothing else.
#
# Settings, from the environment (the <var> of userconfig.xml):
#   VM_NAME        libvirt domain name (required)
#   START_TIMEOUT  seconds start_prim waits for the VM to run (60)
#   STOP_TIMEOUT   seconds the graceful stop_prim waits for the guest to shut
#                  down (120); keep it under <user nicestoptimeout> (300s)
#   VIRSH_TIMEOUT  seconds after which a virsh call is abandoned (30), so
#                  that a hung libvirtd cannot hang a script forever
#   POLL_INTERVAL  seconds between two state polls while waiting (1)
#
# virsh prints its states and messages in the language of the locale; the
# scripts compare them with the English words. LC_ALL=C overrides LANG and
# every LC_* variable, and makes gettext ignore LANGUAGE; unsetting them
# instead would leave bash warning about locales that are not installed.
export LC_ALL=C
unset LANG LANGUAGE

SCRIPT=${0##*/}
SAFEKIT=${SAFE:-/opt/safekit}/safekit

# say writes to the script's log (stdout).
say() { echo "$SCRIPT: $*"; }

# error also writes to the module log, where the operator looks first.
error() {
	say "error: $*"
	"$SAFEKIT" printe "$SCRIPT: $*" || true
}

# seconds NAME DEFAULT prints the value of variable NAME when it is a
# positive whole number, else DEFAULT (and says so when NAME was set).
seconds() {
	local v=${!1:-}
	if [ -z "$v" ]; then
		echo "$2"
	elif [[ $v != *[!0-9]* ]] && [ "$((10#$v))" -gt 0 ]; then
		echo "$((10#$v))"
	else
		say "$1=\"$v\" is not a positive number of seconds: using $2" >&2
		echo "$2"
	fi
}

VIRSH_TIMEOUT=$(seconds VIRSH_TIMEOUT 30)
POLL_INTERVAL=$(seconds POLL_INTERVAL 1)

# vsh runs virsh with a time limit.
vsh() { timeout "$VIRSH_TIMEOUT" virsh "$@"; }

# need_vm_name fails with a message when VM_NAME is empty.
need_vm_name() {
	if [ -z "${VM_NAME:-}" ]; then
		error "VM_NAME is empty: set the VM_NAME macro of userconfig.xml to a libvirt domain name"
		return 1
	fi
}

# vm_state DOMAIN sets VM_STATE to the state virsh domstate reports
# ("running", "shut off", "paused", "in shutdown", "crashed"...) or to
# "missing" when libvirt has no domain of that name. It returns 1, with
# VM_STATE="unknown", when libvirt cannot be asked. virsh's own messages go
# to stderr, that is the script's log.
vm_state() {
	local out name list
	if out=$(vsh domstate --domain "$1"); then
		out=${out%%$'\n'*}
		VM_STATE=${out%"${out##*[![:space:]]}"}
		return 0
	fi
	VM_STATE=unknown
	# domstate fails both for an unknown domain and for an unreachable
	# libvirtd; only the list of defined domains tells them apart.
	list=$(vsh list --all --name) || return 1
	while IFS= read -r name; do
		[ "$name" = "$1" ] && return 1
	done <<<"$list"
	VM_STATE=missing
}

# vm_wait DOMAIN SECONDS STATE... polls the domain until its state is one of
# STATE, for SECONDS at least (bash's SECONDS counts whole seconds, hence the
# "greater than" tests here and in stop_prim). VM_STATE holds the last state
# seen.
vm_wait() {
	local vm=$1 limit=$2 want
	shift 2
	local end=$((SECONDS + limit))
	while :; do
		vm_state "$vm"
		for want in "$@"; do
			[ "$VM_STATE" = "$want" ] && return 0
		done
		[ "$SECONDS" -gt "$end" ] && return 1
		sleep "$POLL_INTERVAL"
	done
}

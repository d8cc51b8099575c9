#!/bin/bash
# selftest.sh runs the scripts of the kvm, mirror and farm templates against
# stand-ins for virsh, systemctl, safekit and xpathGet, and checks what they
# do. It needs neither libvirt, nor systemd, nor SafeKit, nor root:
#
#   modules/templates/selftest.sh        (about 20 s)
#
# Everything is created in a temporary directory, removed at the end. The
# exit status is the number of failed checks (0: all passed).
set -u

templates=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/templates-selftest.XXXXXX")
checker=
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	[ -n "$checker" ] && kill "$checker" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

failures=0
pass() { echo "ok   $*"; }
fail() {
	echo "FAIL $*"
	failures=$((failures + 1))
}

# ---------------------------------------------------------------- stand-ins

mkdir -p "$work/path" "$work/safe/private/bin" "$work/virsh" "$work/units" "$work/conf" "$work/var"

# safekit records its arguments, one call per line.
cat >"$work/safe/safekit" <<'EOF'
#!/bin/bash
echo "$*" >>"$FAKE/safekit.log"
EOF

# xpathGet prints the value stored in xpath.value for the expected query.
cat >"$work/safe/private/bin/xpathGet" <<'EOF'
#!/bin/bash
echo "xpathGet $*" >>"$FAKE/calls"
[ "$1" = "//user/var[@name='SERVICES']/@value" ] || exit 1
[ "$2" = "$SAFEUSERCONF/safeconf.xml" ] || exit 1
cat "$FAKE/xpath.value"
EOF

# virsh keeps each domain's state in virsh/<domain>.state. Optional files:
#   <domain>.queue   states that successive domstate calls take, one a line
#   <domain>.acpi    "ignore": the guest ignores virsh shutdown
#   <domain>.broken  virsh start fails
# A shutdown takes two domstate polls to complete. Under a non-English locale
# it answers in French, as a translated libvirt does.
cat >"$work/path/virsh" <<'EOF'
#!/bin/bash
echo "virsh $*" >>"$FAKE/calls"
d=$FAKE/virsh
cmd=$1
shift
dom=
while [ $# -gt 0 ]; do
	case $1 in
	--domain) dom=$2; shift 2 ;;
	--*) shift ;;
	*) dom=$1; shift ;;
	esac
done
if [ -e "$d/libvirt-down" ]; then
	echo "error: failed to connect to the hypervisor" >&2
	exit 1
fi
if [ "$cmd" = list ]; then
	for f in "$d"/*.state; do
		[ -e "$f" ] || continue
		f=${f##*/}
		echo "${f%.state}"
	done
	echo
	exit 0
fi
f=$d/$dom.state
if [ ! -e "$f" ]; then
	echo "error: failed to get domain '$dom'" >&2
	exit 1
fi
state=$(<"$f")
set_state() { echo "$1" >"$f"; state=$1; }
case $cmd in
domstate)
	if [ -s "$d/$dom.queue" ]; then
		set_state "$(head -n 1 "$d/$dom.queue")"
		tail -n +2 "$d/$dom.queue" >"$d/$dom.queue.new"
		mv "$d/$dom.queue.new" "$d/$dom.queue"
	elif [ "$state" = "in shutdown" ]; then
		n=$(<"$d/$dom.countdown")
		if [ "$n" -le 1 ]; then set_state "shut off"; else echo $((n - 1)) >"$d/$dom.countdown"; fi
	fi
	case ${LC_ALL:-${LC_MESSAGES:-${LANG:-}}} in
	'' | C | C.* | POSIX) ;;
	*) [ "$state" = running ] && state="en cours d’exécution" ;;
	esac
	printf '%s\n\n' "$state"
	;;
start)
	if [ "$state" != "shut off" ]; then
		printf "error: Failed to start domain '%s'\nerror: Requested operation is not valid: domain is already running\n" "$dom" >&2
		exit 1
	fi
	if [ -e "$d/$dom.broken" ]; then
		printf "error: Failed to start domain '%s'\nerror: Cannot access storage file\n" "$dom" >&2
		exit 1
	fi
	set_state running
	echo "Domain '$dom' started"
	;;
shutdown)
	if [ "$state" = "shut off" ]; then
		echo "error: Requested operation is not valid: domain is not running" >&2
		exit 1
	fi
	if [ "$(cat "$d/$dom.acpi" 2>/dev/null)" != ignore ]; then
		set_state "in shutdown"
		echo 2 >"$d/$dom.countdown"
	fi
	echo "Domain '$dom' is being shutdown"
	;;
destroy)
	if [ "$state" = "shut off" ]; then
		echo "error: Requested operation is not valid: domain is not running" >&2
		exit 1
	fi
	set_state "shut off"
	echo "Domain '$dom' destroyed"
	;;
resume)
	set_state running
	echo "Domain '$dom' resumed"
	;;
*)
	echo "fake virsh: $cmd not simulated" >&2
	exit 1
	;;
esac
EOF

# systemctl keeps each unit's state in units/<name>.state (name without
# ".service"); no file: the unit does not exist. Optional files:
#   <name>.broken  systemctl start fails
#   <name>.stuck   systemctl stop does not stop it (SIGKILL does)
cat >"$work/path/systemctl" <<'EOF'
#!/bin/bash
echo "systemctl $*" >>"$FAKE/calls"
d=$FAKE/units
args=()
for a in "$@"; do
	case $a in
	--quiet | --signal=*) ;;
	*) args+=("$a") ;;
	esac
done
cmd=${args[0]}
u=${args[1]%.service}
f=$d/$u.state
state=inactive
[ -e "$f" ] && state=$(<"$f")
case $cmd in
is-active)
	echo "$state"
	[ "$state" = active ]
	;;
cat)
	[ -e "$f" ] || { echo "No files found for $u.service." >&2; exit 1; }
	echo "[Service]"
	;;
disable)
	[ -e "$f" ] || exit 1
	echo "Removed /etc/systemd/system/multi-user.target.wants/$u.service."
	;;
start)
	[ -e "$f" ] || { echo "Failed to start $u.service: Unit $u.service not found." >&2; exit 5; }
	if [ -e "$d/$u.broken" ]; then
		echo failed >"$f"
		echo "Job for $u.service failed because the control process exited with error code." >&2
		exit 1
	fi
	echo active >"$f"
	;;
stop)
	[ -e "$f" ] || exit 5
	[ -e "$d/$u.stuck" ] && [ "$state" = active ] && exit 1
	[ "$state" = failed ] || echo inactive >"$f"
	;;
kill)
	[ "$state" = active ] && echo failed >"$f"
	;;
*)
	echo "fake systemctl: $cmd not simulated" >&2
	exit 1
	;;
esac
EOF
chmod 0755 "$work/path/"* "$work/safe/safekit" "$work/safe/private/bin/xpathGet"

# ------------------------------------------------------------------ helpers

# module NAME installs the scripts of template NAME as SafeKit would: a copy
# in SAFE/private/modules/NAME/bin.
module() {
	local bin=$work/safe/private/modules/$1/bin
	rm -rf "$bin"
	mkdir -p "$bin"
	cp -p "$templates/$1/bin/"* "$bin/"
}

# reset clears the recorded calls and the stand-ins' state.
reset() {
	rm -rf "$work/virsh" "$work/units"
	mkdir -p "$work/virsh" "$work/units"
	: >"$work/calls"
	: >"$work/safekit.log"
	: >"$work/out"
}

# script_env MODULE sets ENVV to the environment SafeKit gives the scripts of
# MODULE, plus the variables in the array extra, and a French locale to prove
# that the scripts do not depend on it.
extra=()
script_env() {
	ENVV=(PATH="$work/path:/usr/bin:/bin" HOME="$work" LANG=fr_FR.UTF-8 LC_MESSAGES=fr_FR.UTF-8
		FAKE="$work" SAFE="$work/safe" SAFEBIN="$work/safe/private/bin" SAFEVAR="$work/var"
		SAFEMODULE="$1" SAFEUSERBIN="$work/safe/private/modules/$1/bin"
		SAFEUSERCONF="$work/conf" SAFEUSERVAR="$work/var/modules/$1" "${extra[@]}")
}

# run MODULE SCRIPT ARGS... runs a script of an installed module in the
# environment of script_env, its output appended to $work/out. RC holds its
# exit status.
run() {
	local m=$1 s=$2
	shift 2
	script_env "$m"
	env -i "${ENVV[@]}" "$work/safe/private/modules/$m/bin/$s" "$@" >>"$work/out" 2>&1
	RC=$?
}

# start_checker ARGS... runs the kvm module's vmcheck in the background;
# checker holds its pid.
start_checker() {
	script_env kvm
	env -i "${ENVV[@]}" "$work/safe/private/modules/kvm/bin/vmcheck" "$@" >>"$work/out" 2>&1 &
	checker=$!
}

# Expectations: each one that does not hold adds a line to problems; verdict
# reports the test and clears them.
problems=()
expect() {
	local what=$1
	shift
	"$@" || problems+=("$what")
}
rc_is() { expect "exit status $RC, expected $1" [ "$RC" -eq "$1" ]; }
state_is() { expect "domain $1 is \"$(<"$work/virsh/$1.state")\", expected \"$2\"" [ "$(<"$work/virsh/$1.state")" = "$2" ]; }
unit_is() { expect "unit $1 is $(<"$work/units/$1.state"), expected $2" [ "$(<"$work/units/$1.state")" = "$2" ]; }
called() { expect "no call: $1" grep -qxF -- "$1" "$work/calls"; }
# shellcheck disable=SC2317 # called through expect
absent() { ! grep -qF -- "$1" "$2"; }
not_called() { expect "unexpected call: $1" absent "$1" "$work/calls"; }
logged() { expect "not in the module log: $1" grep -qF -- "$1" "$work/safekit.log"; }
not_logged() { expect "unexpected in the module log: $1" absent "$1" "$work/safekit.log"; }
output_has() { expect "not in the script output: $1" grep -qF -- "$1" "$work/out"; }
# lines_are FILE PATTERN EXPECTED: the lines of FILE that contain PATTERN,
# joined by ";", are EXPECTED.
lines_are() {
	local got
	got=$(grep -F -- "$2" "$1" | paste -sd ';' -)
	expect "${1##*/}, lines with \"$2\": \"$got\", expected \"$3\"" [ "$got" = "$3" ]
}
calls_are() { lines_are "$work/calls" "$@"; }
module_log_is() { lines_are "$work/safekit.log" "$@"; }
verdict() {
	if [ "${#problems[@]}" -eq 0 ]; then
		pass "$1"
		return
	fi
	fail "$1"
	printf '     - %s\n' "${problems[@]}"
	sed 's/^/     out| /' "$work/out"
	sed 's/^/   calls| /' "$work/calls"
	sed 's/^/ safekit| /' "$work/safekit.log"
	problems=()
}

# wait_for SECONDS COMMAND... polls COMMAND every 0.1 s until it succeeds.
wait_for() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -gt "$end" ] && return 1
		sleep 0.1
	done
}

# ---------------------------------------------------------------------- kvm

module kvm
# Generous limits: a loaded machine must not make a test fail. The tests that
# expect a timeout set smaller ones.
kvm_vars=(VM_NAME=vm1 VM_PATH=/var/lib/libvirt/images/vm1 START_TIMEOUT=10 STOP_TIMEOUT=10)
extra=("${kvm_vars[@]}")

reset
echo "shut off" >"$work/virsh/vm1.state"
run kvm start_prim ALONE ALONE start
rc_is 0
state_is vm1 running
called "virsh start --domain vm1"
output_has "Running start_prim ALONE ALONE start"
verdict "kvm start_prim starts a stopped VM"

reset
echo running >"$work/virsh/vm1.state"
run kvm start_prim ALONE ALONE start
rc_is 0
not_called "virsh start"
verdict "kvm start_prim leaves a running VM alone"

reset
echo paused >"$work/virsh/vm1.state"
run kvm start_prim PRIM PRIM start
rc_is 0
state_is vm1 running
called "virsh resume --domain vm1"
verdict "kvm start_prim resumes a paused VM"

reset
echo "shut off" >"$work/virsh/vm1.state"
: >"$work/virsh/vm1.broken"
run kvm start_prim ALONE ALONE start
rc_is 1
logged "printe start_prim: virsh start vm1 failed"
calls_are "virsh domstate" "virsh domstate --domain vm1;virsh domstate --domain vm1"
verdict "kvm start_prim fails at once when virsh start fails"

reset
echo "shut off" >"$work/virsh/vm1.state"
printf '%s\n' "shut off" "shut off" "shut off" "shut off" "shut off" "shut off" >"$work/virsh/vm1.queue"
extra=(VM_NAME=vm1 START_TIMEOUT=2)
run kvm start_prim ALONE ALONE start
extra=("${kvm_vars[@]}")
rc_is 1
logged "printe start_prim: vm1 is not running 2s after its start (state: shut off)"
verdict "kvm start_prim gives up after START_TIMEOUT"

reset
run kvm start_prim ALONE ALONE start
rc_is 1
logged "printe start_prim: no libvirt domain named vm1"
verdict "kvm start_prim reports a missing domain"

reset
: >"$work/virsh/libvirt-down"
run kvm start_prim ALONE ALONE start
rc_is 1
logged "printe start_prim: cannot get the state of vm1"
verdict "kvm start_prim reports an unreachable libvirtd"

reset
extra=(VM_PATH=/var/lib/libvirt/images/vm1)
run kvm start_prim ALONE ALONE start
extra=("${kvm_vars[@]}")
rc_is 1
logged "VM_NAME is empty"
verdict "kvm start_prim without VM_NAME fails clearly"

reset
echo running >"$work/virsh/vm1.state"
run kvm stop_prim ALONE WAIT stop
rc_is 0
state_is vm1 "shut off"
called "virsh shutdown --domain vm1"
not_called "virsh destroy"
output_has "Running stop_prim ALONE WAIT stop"
verdict "kvm stop_prim shuts the guest down"

reset
echo running >"$work/virsh/vm1.state"
echo ignore >"$work/virsh/vm1.acpi"
extra=(VM_NAME=vm1 STOP_TIMEOUT=2)
run kvm stop_prim ALONE WAIT stop
extra=("${kvm_vars[@]}")
rc_is 1
state_is vm1 running
logged "printe stop_prim: vm1 did not shut down within 2s"
verdict "kvm stop_prim fails after STOP_TIMEOUT when the guest ignores shutdown"
run kvm stop_prim force ALONE WAIT stop
rc_is 0
state_is vm1 "shut off"
called "virsh destroy --domain vm1"
verdict "kvm stop_prim force destroys it"

reset
echo "shut off" >"$work/virsh/vm1.state"
run kvm stop_prim ALONE WAIT stop
rc_is 0
run kvm stop_prim force ALONE WAIT stop
rc_is 0
not_called "virsh shutdown"
not_called "virsh destroy"
verdict "kvm stop_prim does nothing to a stopped VM"

reset
echo paused >"$work/virsh/vm1.state"
run kvm stop_prim ALONE WAIT stop
rc_is 1
not_called "virsh shutdown"
verdict "kvm stop_prim leaves a paused VM to the forced stop"

reset
run kvm stop_prim ALONE WAIT stop
rc_is 1
logged "printe stop_prim: no libvirt domain named vm1"
verdict "kvm stop_prim: a missing domain fails the graceful stop"
: >"$work/safekit.log"
run kvm stop_prim force ALONE WAIT stop
rc_is 0
logged "printe stop_prim: no libvirt domain named vm1"
verdict "kvm stop_prim force: a missing domain is reported, not an error"

reset
echo running >"$work/virsh/vm1.state"
run kvm prestart STOP WAIT start
rc_is 0
state_is vm1 "shut off"
calls_are "virsh shutdown" "virsh shutdown --domain vm1"
output_has "Running stop_prim force"
not_logged "stop -i"
verdict "kvm prestart stops the VM, graceful then forced"

reset
echo running >"$work/virsh/vm1.state"
echo ignore >"$work/virsh/vm1.acpi"
extra=(VM_NAME=vm1 STOP_TIMEOUT=2)
run kvm prestart STOP WAIT start
extra=("${kvm_vars[@]}")
rc_is 0
state_is vm1 "shut off"
called "virsh destroy --domain vm1"
verdict "kvm prestart destroys a VM that ignores shutdown"

reset
: >"$work/virsh/libvirt-down"
run kvm prestart STOP WAIT start
rc_is 1
logged "stop -i prestart"
verdict "kvm prestart stops the module when the VM state is unknown"

# vmcheck sees, one check after the other: running, paused, running (one
# failure is within the grace of 2), paused 3 times (down once), then
# running (up again).
reset
echo running >"$work/virsh/vm1.state"
printf '%s\n' running paused running paused paused paused running >"$work/virsh/vm1.queue"
start_checker kvm custom.vm1_check vm1 2 0.2
# shellcheck disable=SC2317 # called through wait_for
queue_done() { [ ! -s "$work/virsh/vm1.queue" ] && [ "$(grep -c "^set " "$work/safekit.log")" -ge 3 ]; }
wait_for 10 queue_done
sleep 1
kill -TERM "$checker"
wait "$checker"
checker=
module_log_is "set -r " "set -r custom.vm1_check -v up -m kvm;set -r custom.vm1_check -v down -m kvm;set -r custom.vm1_check -v up -m kvm"
logged "printe vmcheck: vm1 is not running (state: paused, 2 checks in a row): custom.vm1_check set down"
verdict "vmcheck: up, down after 2 failed checks in a row, up; set only on changes"

# SIGTERM during a long period: the checker and its sleep end at once. The
# period is unusual, so that its sleep is easy to find.
long=29.$((RANDOM % 900 + 100))
reset
echo running >"$work/virsh/vm1.state"
start_checker kvm custom.vm1_check vm1 2 "$long"
wait_for 5 grep -qF "set -r custom.vm1_check -v up -m kvm" "$work/safekit.log"
sleep 0.3
kill -TERM "$checker"
# shellcheck disable=SC2317 # called through wait_for
gone() { ! kill -0 "$checker" 2>/dev/null; }
# shellcheck disable=SC2317 # called through wait_for
no_sleep() { ! pgrep -xf "sleep $long" >/dev/null; }
expect "vmcheck still runs 2 s after SIGTERM" wait_for 2 gone
expect "its sleep still runs 2 s after SIGTERM" wait_for 2 no_sleep
verdict "vmcheck ends at once on SIGTERM"
wait "$checker" 2>/dev/null
checker=

reset
run kvm vmcheck kvm custom.vm1_check
rc_is 2
logged "printe vmcheck: usage: vmcheck"
verdict "vmcheck without a VM name exits with its usage"

# ------------------------------------------------------------ mirror, farm

units() {
	local u
	for u in "$@"; do echo inactive >"$work/units/$u.state"; done
}

module mirror
extra=(SERVICES=" alpha ,beta.service,, gamma ")

reset
units alpha beta gamma
run mirror start_prim ALONE ALONE start
rc_is 0
calls_are "systemctl start" "systemctl start alpha;systemctl start beta.service;systemctl start gamma"
unit_is gamma active
output_has "Running start_prim ALONE ALONE start"
verdict "mirror start_prim starts the services in order, blanks trimmed"
run mirror stop_prim ALONE WAIT stop
rc_is 0
calls_are "systemctl stop" "systemctl stop gamma;systemctl stop beta.service;systemctl stop alpha"
unit_is alpha inactive
verdict "mirror stop_prim stops them in reverse order"

reset
units alpha beta gamma
: >"$work/units/beta.broken"
run mirror start_prim ALONE ALONE start
rc_is 1
logged "printe start_prim: service beta.service did not start"
logged "stop -i start_prim"
not_called "systemctl start gamma"
verdict "mirror start_prim: a service that fails stops the module"

reset
units alpha beta gamma
echo active >"$work/units/beta.state"
: >"$work/units/beta.stuck"
run mirror stop_prim PRIM WAIT stop
rc_is 1
logged "printe stop_prim: service beta.service is still active after its graceful stop"
verdict "mirror stop_prim reports a service that does not stop"
run mirror stop_prim force PRIM WAIT stop
rc_is 0
unit_is beta failed
calls_are "systemctl kill" "systemctl kill --signal=SIGKILL beta.service"
verdict "mirror stop_prim force kills it, then stops it"

reset
units alpha beta gamma
echo active >"$work/units/alpha.state"
run mirror prestart STOP WAIT start
rc_is 0
unit_is alpha inactive
lines_are "$work/out" "Running stop_prim" "Running stop_prim ;Running stop_prim force"
not_logged "stop -i"
verdict "mirror prestart runs stop_prim, graceful then forced"

reset
units alpha beta gamma
echo active >"$work/units/alpha.state"
: >"$work/units/alpha.stuck"
run mirror prestart STOP WAIT start
rc_is 0
unit_is alpha failed
verdict "mirror prestart kills a service that does not stop"

reset
units alpha beta gamma
run mirror start_prim PRIM PRIM restart -Services "gamma, alpha"
rc_is 0
calls_are "systemctl start" "systemctl start gamma;systemctl start alpha"
verdict "mirror start_prim -Services restarts only the services named"

reset
extra=(SERVICES=)
run mirror start_prim ALONE ALONE start
rc_is 0
logged "printi start_prim: no service in the SERVICES variable: nothing to do"
not_called systemctl
verdict "mirror: an empty SERVICES starts nothing and succeeds"

reset
extra=()
units alpha beta
echo "alpha,beta" >"$work/xpath.value"
run mirror start_prim ALONE ALONE start
rc_is 0
called "xpathGet //user/var[@name='SERVICES']/@value $work/conf/safeconf.xml"
calls_are "systemctl start" "systemctl start alpha;systemctl start beta"
verdict "mirror: without SERVICES in the environment, xpathGet reads safeconf.xml"

reset
extra=(SERVICES="alpha, bad name")
run mirror start_prim ALONE ALONE start
rc_is 1
logged "not a systemd service name"
logged "stop -i start_prim"
not_called "systemctl start"
verdict "mirror: a name that is not a unit name stops the module"

reset
extra=(SERVICES="alpha, nosuch, beta")
units alpha beta
run mirror postconfig
rc_is 1
logged "printe postconfig: the service 'nosuch' does not exist on this node; check the SERVICES macro"
not_called "systemctl disable"
verdict "mirror postconfig names a missing service and the SERVICES macro"

reset
extra=(SERVICES="alpha, beta")
units alpha beta
run mirror postconfig
rc_is 0
calls_are "systemctl disable" "systemctl disable alpha;systemctl disable beta"
verdict "mirror postconfig disables the start at boot of each service"

module farm
extra=(SERVICES="alpha,beta")

reset
units alpha beta
run farm start_both UP UP start
rc_is 0
run farm stop_both UP WAIT stop
rc_is 0
calls_are "systemctl st" "systemctl start alpha;systemctl start beta;systemctl stop beta;systemctl stop alpha"
verdict "farm start_both and stop_both"

reset
units alpha beta
echo active >"$work/units/alpha.state"
run farm prestart STOP WAIT start
rc_is 0
unit_is alpha inactive
output_has "Running stop_both force"
verdict "farm prestart runs stop_both, graceful then forced"

expect "mirror/bin/services_lib.sh and farm/bin/services_lib.sh differ" \
	cmp -s "$templates/mirror/bin/services_lib.sh" "$templates/farm/bin/services_lib.sh"
expect "mirror/bin/prestart and kvm/bin/prestart differ" cmp -s "$templates/kvm/bin/prestart" "$templates/mirror/bin/prestart"
expect "farm/bin/prestart and kvm/bin/prestart differ" cmp -s "$templates/kvm/bin/prestart" "$templates/farm/bin/prestart"
verdict "the templates share the same library and prestart"

echo
if [ "$failures" -eq 0 ]; then
	echo "selftest: all checks passed"
else
	echo "selftest: $failures check(s) failed"
fi
exit "$((failures > 125 ? 125 : failures))"

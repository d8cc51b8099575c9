#!/bin/bash
# services_lib.sh is sourced by the scripts of the mirror and farm modules;
# running it does nothing. The application is a list of systemd services:
# started in the order of the SERVICES list, stopped in the reverse order.
#
# Where the list comes from, first found:
#   1. "-Services <list>" among the script's arguments: errd's
#      restart_services restarts only those services that way;
#   2. the SERVICES variable (<var name="SERVICES" value="%SERVICES%"/>);
#   3. when SERVICES is not in the environment, the same <var> read from the
#      module's active configuration, $SAFEUSERCONF/safeconf.xml.
# Items are separated by commas; blanks around them are ignored, and so are
# empty items. "nginx" and "nginx.service" name the same service.

SCRIPT=${0##*/}
SAFEKIT=${SAFE:-/opt/safekit}/safekit

# service_settle is how long a started service may stay "activating" before
# start_services looks at its state for the last time, in seconds.
service_settle=10
# force_stop_limit bounds the systemctl stop that follows a kill, in seconds.
force_stop_limit=60

# say writes to the script's log (stdout).
say() { echo "$SCRIPT: $*"; }

# info also writes to the verbose module log; error to the module log.
info() {
	say "$*"
	"$SAFEKIT" printi "$SCRIPT: $*" || true
}
error() {
	say "error: $*"
	"$SAFEKIT" printe "$SCRIPT: $*" || true
}

# give_up reports a failure that leaves the application unusable on this
# node, and stops the module: a mirror then fails over to its secondary, a
# farm node leaves the load balancing.
give_up() {
	error "$*; the module stops"
	"$SAFEKIT" stop -i "$SCRIPT"
	exit 1
}

# services_init "$@" echoes the script's arguments, sets FORCE (true when the
# first one is "force") and SERVICE_LIST (an array, in start order). It
# returns 1 after an error message when the list cannot be read or holds a
# name that is not a systemd unit name.
services_init() {
	echo "Running $SCRIPT $*"
	FORCE=false
	[ "${1:-}" = force ] && FORCE=true

	local raw="" from="" i
	for ((i = 1; i <= $#; i++)); do
		if [ "${!i}" = -Services ]; then
			raw=${*:i+1}
			from="the -Services argument"
			break
		fi
	done
	if [ -z "$from" ] && [ -n "${SERVICES+set}" ]; then
		raw=$SERVICES
		from="the SERVICES variable"
	fi
	if [ -z "$from" ]; then
		from="${SAFEUSERCONF:-}/safeconf.xml"
		if ! raw=$("${SAFEBIN:-${SAFE:-/opt/safekit}/private/bin}/xpathGet" "//user/var[@name='SERVICES']/@value" "$from"); then
			error "SERVICES is not in the environment, and cannot be read from $from either: userconfig.xml needs <var name=\"SERVICES\" value=\"%SERVICES%\"/> in <user>"
			return 1
		fi
	fi

	SERVICE_LIST=()
	local item bad=() items=()
	IFS=',' read -r -a items <<<"${raw//$'\n'/,}"
	for item in "${items[@]}"; do
		item=${item#"${item%%[![:space:]]*}"}
		item=${item%"${item##*[![:space:]]}"}
		[ -z "$item" ] && continue
		# systemd unit names use these characters only; the leading dash
		# would make the name an option of systemctl.
		if [[ $item == -* || $item == *[!A-Za-z0-9:_.@\\-]* ]]; then
			bad+=("'$item'")
		fi
		SERVICE_LIST+=("$item")
	done
	if [ "${#bad[@]}" -ne 0 ]; then
		error "${bad[*]} in $from: not a systemd service name; check the SERVICES macro of userconfig.xml"
		return 1
	fi
	if [ "${#SERVICE_LIST[@]}" -eq 0 ]; then
		info "no service in $from: nothing to do"
	else
		say "services from $from: ${SERVICE_LIST[*]}"
	fi
}

# service_state prints the state of a unit as systemctl is-active reports it
# (active, inactive, failed, activating, deactivating, reloading).
service_state() { systemctl is-active "$1"; }

# stopped tells whether a state means the service is not running.
stopped() { [ "$1" = inactive ] || [ "$1" = failed ]; }

# start_services starts the services in order. The first that does not
# start stops the module (give_up): the services after it are not started.
start_services() {
	local svc st end
	for svc in "${SERVICE_LIST[@]}"; do
		st=$(service_state "$svc")
		if [ "$st" = active ]; then
			say "$svc is already active"
			continue
		fi
		say "systemctl start $svc"
		systemctl start "$svc" || give_up "service $svc did not start (journalctl -u $svc tells why)"
		end=$((SECONDS + service_settle))
		st=$(service_state "$svc")
		while [ "$st" = activating ] && [ "$SECONDS" -le "$end" ]; do
			sleep 1
			st=$(service_state "$svc")
		done
		case $st in
		active) say "$svc is active" ;;
		activating | reloading) say "$svc is still $st after ${service_settle}s: going on" ;;
		*) give_up "service $svc is $st after its start (journalctl -u $svc tells why)" ;;
		esac
	done
}

# stop_services stops the services in reverse order. A graceful stop asks
# systemd to stop each one (systemd itself kills what outlives the unit's
# TimeoutStopSec). A forced stop (FORCE=true) kills what still runs, then
# stops the unit. Every service is tried; the return is 1 when one of them
# still runs at the end.
stop_services() {
	local i svc st rc=0 how=graceful
	$FORCE && how=forced
	for ((i = ${#SERVICE_LIST[@]} - 1; i >= 0; i--)); do
		svc=${SERVICE_LIST[i]}
		st=$(service_state "$svc")
		if stopped "$st"; then
			say "$svc is already stopped ($st)"
			continue
		fi
		if $FORCE; then
			say "$svc is $st: systemctl kill --signal=SIGKILL $svc, then systemctl stop $svc"
			systemctl kill --signal=SIGKILL "$svc"
			timeout "$force_stop_limit" systemctl stop "$svc"
		else
			say "systemctl stop $svc"
			systemctl stop "$svc"
		fi
		st=$(service_state "$svc")
		if stopped "$st"; then
			say "$svc is stopped ($st)"
		else
			error "service $svc is still $st after its $how stop"
			rc=1
		fi
	done
	return "$rc"
}

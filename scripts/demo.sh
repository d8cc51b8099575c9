#!/usr/bin/env bash
# The main job (make demo): two nodes on this machine protect a KVM virtual
# machine with the project's kvm module; the web console shows them. Prints
# the console URLs, the user and password, and commands to try, then waits:
# Ctrl-C (or SIGTERM) removes everything.
#
#   scripts/demo.sh           # the demo, until Ctrl-C
#   scripts/demo.sh --check   # bring it up, check it and one failover, tear
#                             # it down; exit non-zero on any failure (CI)
#
# DEMO_CI=1 is the same as --check. Run as root on Debian with Go: the
# packages below are installed when missing, then the project is built
# (nothing is rebuilt when it is up to date) and internal/tools/demo runs.
# SAFEKIT_DEMO_BIN and SAFEKIT_DEMO_BUILD choose where the binaries and the
# template archives are built (default: bin and build, as make build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$PATH:/usr/local/go/bin"

check=()
[[ ${DEMO_CI:-} == 1 ]] && check=(-check)
for arg in "$@"; do
	case $arg in
	--check | -check) check=(-check) ;;
	-h | --help)
		sed -n '2,16s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*)
		echo "scripts/demo.sh: unknown argument $arg (see scripts/demo.sh --help)" >&2
		exit 2
		;;
	esac
done

if [[ $(id -u) != 0 ]]; then
	echo "scripts/demo.sh: run it as root (sudo make demo): it creates network namespaces, bridges and mounts" >&2
	exit 1
fi
if ! command -v go >/dev/null; then
	echo "scripts/demo.sh: Go is not installed (or not on PATH): install it from https://go.dev/dl/" >&2
	exit 1
fi

# What the demo runs: libvirt and qemu in the nodes, busybox and cpio for
# the guest's initramfs, kmod and xz for its kernel modules, iproute2 for
# the nodes' network. The same list as .ci/run's KVM packages.
packages=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils busybox-static cpio kmod xz-utils iproute2)
missing=()
command -v make >/dev/null || missing+=(make)
for p in "${packages[@]}"; do
	if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
		missing+=("$p")
	fi
done
export DEBIAN_FRONTEND=noninteractive
if ((${#missing[@]} > 0)); then
	printf '\033[1m==> Installing what the demo needs: %s\033[0m\n' "${missing[*]}"
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
elif [[ $(apt-cache policy linux-image-amd64 2>/dev/null || true) != *"Candidate: "[0-9]* ]]; then
	# The guest's kernel comes from apt-get download, which needs the
	# package lists (without them, a kernel downloaded before is used).
	printf '\033[1m==> apt-get update (for the guest kernel)\033[0m\n'
	apt-get update || echo "scripts/demo.sh: apt-get update failed; going on with a kernel downloaded before, if any" >&2
fi

bin=${SAFEKIT_DEMO_BIN:-$root/bin}
build=${SAFEKIT_DEMO_BUILD:-$root/build}
printf '\033[1m==> Building (make build)\033[0m\n'
make --no-print-directory -s build BIN="$bin" BUILD="$build" >/dev/null
go build -o "$bin/demo" ./internal/tools/demo

# exec: Ctrl-C and SIGTERM reach the demo itself, which removes what it made.
exec "$bin/demo" "${check[@]}" -bin "$bin" -templates "$build/Application_Modules/generic"

#!/bin/sh
# Installs stasis and makes it the `criu` that container runtimes find.
#
#   deploy/install.sh [--prefix DIR] [--bin FILE]    install (default prefix /usr/local)
#   deploy/install.sh --uninstall [--prefix DIR]     undo it
#
# runc, podman, containerd's runc shim and docker execute `criu swrk <fd>`, looked up in
# their PATH, where /usr/local/sbin comes before /usr/sbin. So this installs
#   PREFIX/sbin/stasis        the binary (from target/release/stasis by default)
#   PREFIX/sbin/criu          a symlink to stasis
#   PREFIX/sbin/stasis-runc   the runc-compatible runtime (podman --runtime, docker runtimes)
#   PREFIX/sbin/containerd-shim-stasis-v2   containerd's runtime io.containerd.stasis.v2
# (the last two from beside the stasis binary, when they were built: cargo build --release
# -p stasis-runc -p containerd-shim-stasis-v2). stasis-runc finds stasis next to itself and
# the shim finds stasis-runc next to itself. Config snippets: deploy/{containerd,podman,docker}.
# Debian's /usr/sbin/criu (the criu package) is never touched. A /usr/local/sbin/criu that
# is not ours is kept aside as criu.pre-stasis and put back by --uninstall.
set -eu

prefix=/usr/local
bin=
uninstall=0
here=$(cd "$(dirname "$0")" && pwd)

usage() {
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || usage 2; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --bin) [ $# -ge 2 ] || usage 2; bin=$2; shift 2 ;;
        --bin=*) bin=${1#--bin=}; shift ;;
        --uninstall) uninstall=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; usage 2 ;;
    esac
done

sbin=$prefix/sbin
stasis=$sbin/stasis
criu=$sbin/criu
backup=$sbin/criu.pre-stasis

die() { echo "install.sh: $*" >&2; exit 1; }

# Is $criu our symlink (pointing at stasis, relative or absolute)?
ours() {
    [ -L "$criu" ] || return 1
    case "$(readlink "$criu")" in
        stasis|"$stasis") return 0 ;;
        *) return 1 ;;
    esac
}

writable=$sbin
[ -e "$sbin" ] || writable=$prefix
if [ ! -w "$writable" ] && [ "$(id -u)" -ne 0 ]; then
    die "writing to $sbin needs root (sudo $0 ...)"
fi

if [ "$uninstall" -eq 1 ]; then
    if ours; then
        rm -f "$criu"
        echo "removed $criu"
    elif [ -e "$criu" ] || [ -L "$criu" ]; then
        echo "left $criu alone: it is not stasis's symlink"
    fi
    if [ -e "$backup" ] && [ ! -e "$criu" ] && [ ! -L "$criu" ]; then
        mv "$backup" "$criu"
        echo "put back $criu (from $backup)"
    fi
    if [ -e "$stasis" ]; then
        rm -f "$stasis"
        echo "removed $stasis"
    fi
    for extra in stasis-runc containerd-shim-stasis-v2; do
        if [ -e "$sbin/$extra" ]; then
            rm -f "$sbin/$extra"
            echo "removed $sbin/$extra"
        fi
    done
    exit 0
fi

[ -n "$bin" ] || bin=$here/../target/release/stasis
[ -x "$bin" ] || die "no stasis binary at $bin: build it with \`cargo build --release -p stasis-cli\` (or pass --bin FILE)"
"$bin" --version 2>/dev/null | grep -q stasis || die "$bin does not look like stasis (--version)"

mkdir -p "$sbin"
# Replace the binary atomically: a runtime may exec it at any moment.
install -m 0755 "$bin" "$stasis.new"
mv -f "$stasis.new" "$stasis"
echo "installed $stasis"

if ! ours; then
    if [ -e "$criu" ] || [ -L "$criu" ]; then
        [ -e "$backup" ] || [ -L "$backup" ] && die "$criu is not stasis's and $backup exists already; move one of them away"
        mv "$criu" "$backup"
        echo "kept the previous $criu as $backup"
    fi
    ln -s stasis "$criu.new"
    mv -f "$criu.new" "$criu"
fi
echo "linked $criu -> stasis"

# The runtime and the containerd shim, built beside the stasis binary.
bindir=$(dirname "$bin")
for extra in stasis-runc containerd-shim-stasis-v2; do
    if [ -x "$bindir/$extra" ]; then
        install -m 0755 "$bindir/$extra" "$sbin/$extra.new"
        mv -f "$sbin/$extra.new" "$sbin/$extra"
        echo "installed $sbin/$extra"
    else
        echo "note: no $bindir/$extra; build it with \`cargo build --release -p $extra\` to install it"
    fi
done

# What a runtime will run: the first criu in a service's PATH.
svc_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
found=$(PATH=$svc_path command -v criu || true)
if [ "$found" = "$criu" ]; then
    echo "runtimes will run: $("$criu" --version | head -n 1)"
else
    echo "note: with PATH=$svc_path a runtime finds ${found:-no criu}, not $criu;" \
        "put $sbin first in the PATH of runc/podman/containerd, or use \`runc --criu $stasis\`"
fi

#!/usr/bin/env bash
# Local container images for the Redis tests' Docker path (testcontainers),
# for machines that have Docker's engine but cannot pull images.
#
#   scripts/docker-test-image.sh [start]   start dockerd if none answers, then
#                                          build the image(s) and check that one
#                                          answers PING
#   scripts/docker-test-image.sh stop      stop the dockerd `start` started, if any
#
# The image is built `FROM scratch` out of this machine's own `redis-server`
# (REDIS_SERVER, default the one on PATH) and the shared libraries `ldd` lists
# for it, tagged `session-test-redis:local` (REDIS_IMAGE_TAG). With
# VALKEY_SERVER=/path/to/valkey-server, a second image, `session-test-valkey:local`
# (VALKEY_IMAGE_TAG), is built the same way from that binary.
#
# dockerd, when this script starts it, runs with host networking only
# (`--iptables=false --bridge=none`), its data, pidfile and log under
# SESSION_TEST_DOCKER_STATE (default /tmp/session-test-docker), on the default
# socket /var/run/docker.sock. A daemon that already answers `docker info`
# (DOCKER_HOST's, or the default socket's) is used as it is and never stopped.
set -euo pipefail

state=${SESSION_TEST_DOCKER_STATE:-/tmp/session-test-docker}
redis_tag=${REDIS_IMAGE_TAG:-session-test-redis:local}
valkey_tag=${VALKEY_IMAGE_TAG:-session-test-valkey:local}

say() { printf 'docker-test-image: %s\n' "$*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

# Whether process $1 runs (a zombie, not yet reaped, does not).
running() {
    kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]
}

# Whether pidfile $1 names a running dockerd (not some later process that
# was given the same pid after a reboot).
alive() {
    [ -s "$1" ] && running "$(cat "$1")" && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = dockerd ]
}

# The first line a server on 127.0.0.1:$1 answers to PING, if any.
ping_port() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'PING\r\n' >&3 && read -r -t 2 r <&3 && printf '%s' "$r") 2>/dev/null || true
}

# A loopback port nothing listens on.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 30000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
    done
    echo "$port"
}

daemon_answers() { docker info >/dev/null 2>&1; }

start_dockerd() {
    if daemon_answers; then
        if alive "$state/dockerd.pid"; then
            say "dockerd started earlier by this script is running (pid $(cat "$state/dockerd.pid"))"
        else
            say "a Docker daemon already answers; using it (it will not be stopped)"
        fi
        return
    fi
    command -v dockerd >/dev/null 2>&1 \
        || die "no Docker daemon answers and dockerd is not installed (apt-get install -y docker.io)"
    mkdir -p "$state"
    say "starting dockerd (host networking only; log $state/dockerd.log)"
    # setsid: the daemon outlives this script and is not hit by the
    # caller's job-control signals; `stop` ends it by its recorded pid.
    setsid dockerd --iptables=false --ip-masq=false --bridge=none \
        --data-root "$state/data" --exec-root "$state/exec" \
        --pidfile "$state/dockerd-own.pid" \
        >"$state/dockerd.log" 2>&1 </dev/null &
    echo $! >"$state/dockerd.pid"
    for _ in $(seq 1 120); do
        daemon_answers && break
        alive "$state/dockerd.pid" || {
            tail -n 30 "$state/dockerd.log" >&2
            rm -f "$state/dockerd.pid"
            die "dockerd exited while starting (log above, full log in $state/dockerd.log)"
        }
        sleep 0.5
    done
    daemon_answers || {
        tail -n 30 "$state/dockerd.log" >&2
        die "dockerd did not answer \`docker info\` within 60 s (log above)"
    }
    say "dockerd is up (pid $(cat "$state/dockerd.pid"))"
}

# build_image BINARY NAME_IN_IMAGE TAG
build_image() {
    local bin=$1 name=$2 tag=$3 ctx real
    [ -x "$bin" ] || die "$bin is not an executable file"
    real=$(readlink -f "$bin")
    ctx=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$ctx'; trap - RETURN" RETURN
    mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/data"
    # Under the name it is run by: redis-server is often a link to
    # redis-check-rdb, and the binary picks its role from argv[0].
    cp "$real" "$ctx/rootfs/usr/bin/$name"
    # Every library ldd resolves, and the dynamic loader, at their own paths.
    local libs
    libs=$(ldd "$real" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    [ -n "$libs" ] || die "ldd found no shared libraries for $real (a static binary needs none; this script expects a dynamic one)"
    local lib
    for lib in $libs; do
        cp -L --parents "$lib" "$ctx/rootfs/"
    done
    local version
    version=$("$bin" --version 2>/dev/null | head -n 1 || true)
    cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
WORKDIR /data
EXPOSE 6379
LABEL org.opencontainers.image.description="$name from the build machine: $version"
ENTRYPOINT ["/usr/bin/$name"]
# What the harness passes instead with host networking: --port N --bind
# 127.0.0.1 --save "" --appendonly no. Without it (a bridge, a mapped port),
# connections come from the bridge's gateway, so protected mode is off.
CMD ["--protected-mode", "no", "--save", "", "--appendonly", "no"]
EOF
    say "building $tag from $real ($version) and $(wc -w <<<"$libs") libraries"
    local built
    # (Its output is shown only on failure: the legacy builder's deprecation
    # notice would be noise.)
    built=$(docker build -q -t "$tag" "$ctx" 2>&1) \
        || die "docker build of $tag failed: $built"
    # One run as the harness makes it: host networking, a free loopback
    # port, and PING answered there.
    local port cid reply=
    port=$(free_port)
    cid=$(docker run -d --rm --network host "$tag" \
        --port "$port" --bind 127.0.0.1 --save "" --appendonly no) \
        || die "the image $tag does not start"
    for _ in $(seq 1 50); do
        reply=$(ping_port "$port")
        [[ $reply == +PONG* ]] && break
        sleep 0.1
    done
    local logs
    logs=$(docker logs "$cid" 2>&1 | tail -n 5)
    docker rm -f "$cid" >/dev/null 2>&1 || true
    [[ $reply == +PONG* ]] || die "a container of $tag did not answer PING on 127.0.0.1:$port; its log: $logs"
    say "built $tag ($version); a container of it answered PING on 127.0.0.1:$port"
}

cmd_start() {
    command -v docker >/dev/null 2>&1 || die "the docker client is not installed (apt-get install -y docker.io)"
    mkdir -p "$state"
    start_dockerd
    local redis=${REDIS_SERVER:-$(command -v redis-server || true)}
    [ -n "$redis" ] || die "no redis-server on PATH (apt-get install -y redis-server) and REDIS_SERVER unset"
    build_image "$redis" redis-server "$redis_tag"
    if [ -n "${VALKEY_SERVER:-}" ]; then
        build_image "$VALKEY_SERVER" valkey-server "$valkey_tag"
    fi
    say "ready; run the Docker path with:"
    say "  SESSION_TEST_REDIS=docker SESSION_TEST_REDIS_IMAGE=$redis_tag SESSION_TEST_DOCKER_NETWORK=host \\"
    say "    cargo test -p session-store-redis --features docker --test conformance -- redis::"
}

# stop_pid NAME PIDFILE: SIGTERM, wait up to 30 s, then SIGKILL; only if
# the pidfile names a running dockerd.
stop_pid() {
    local name=$1 pidfile=$2 pid
    alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    say "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
        running "$pid" || break
        sleep 0.5
    done
    if running "$pid"; then
        say "$name did not stop within 30 s; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    if [ -s "$state/dockerd.pid" ]; then
        stop_pid dockerd "$state/dockerd.pid"
        # dockerd stops the containerd it started, but leaves its network
        # namespace mounted under its exec root: unmount what is ours.
        local mnt
        for mnt in $(awk -v root="$state/exec/" 'index($2, root) == 1 { print $2 }' /proc/mounts); do
            umount "$mnt" 2>/dev/null || say "cannot unmount $mnt"
        done
        # Its data (the images) stays in $state/data for the next start.
    else
        say "no dockerd started by this script to stop"
    fi
}

case "${1:-start}" in
start) cmd_start ;;
stop) cmd_stop ;;
*) die "usage: $0 [start|stop]" ;;
esac

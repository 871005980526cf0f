#!/bin/bash
# Entrypoint of the lab's ZooKeeper stand-in image (images/zookeeper/Containerfile). It
# follows the documented interface of the official zookeeper image's entrypoint; the
# script itself is this project's.
#
# Unless $ZOO_CONF_DIR/zoo.cfg exists, it writes one from the ZOO_* variables (as the
# official one, without clientPort: the client port is the `;2181` part of the server
# lines, or only a secureClientPort from ZOO_CFG_EXTRA); unless
# $ZOO_DATA_DIR/myid exists, it writes $ZOO_MY_ID (default 1) there; then it runs its
# arguments. Started as root for `zkServer.sh`, it first gives the data and log
# directories to the `zookeeper` user and runs the server as that user. As any other user
# (the chart runs it as 1000 with a read-only root filesystem) it writes nothing outside
# $ZOO_CONF_DIR and the data and log directories.
set -euo pipefail

: "${ZOO_CONF_DIR:=/conf}" "${ZOO_DATA_DIR:=/data}" "${ZOO_DATA_LOG_DIR:=/datalog}"
: "${ZOO_LOG_DIR:=/logs}" "${ZOO_TICK_TIME:=2000}" "${ZOO_INIT_LIMIT:=5}"
: "${ZOO_SYNC_LIMIT:=2}" "${ZOO_MAX_CLIENT_CNXNS:=60}" "${ZOO_STANDALONE_ENABLED:=true}"
: "${ZOO_ADMINSERVER_ENABLED:=true}" "${ZOO_AUTOPURGE_PURGEINTERVAL:=0}"
: "${ZOO_AUTOPURGE_SNAPRETAINCOUNT:=3}" "${ZOO_4LW_COMMANDS_WHITELIST=srvr}"
: "${ZOO_SERVERS:=server.1=localhost:2888:3888;2181}" "${ZOO_CFG_EXTRA:=}"

mkdir -p "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR" "$ZOO_LOG_DIR"

if [[ "$(id -u)" == 0 && "${1:-}" == zkServer.sh ]]; then
    chown -R zookeeper:zookeeper "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR" "$ZOO_LOG_DIR"
    exec setpriv --reuid=zookeeper --regid=zookeeper --init-groups -- "$0" "$@"
fi

config="$ZOO_CONF_DIR/zoo.cfg"
if [[ ! -f "$config" ]]; then
    # Written aside and renamed: a start interrupted half-way leaves no partial zoo.cfg
    # that the next start would keep.
    {
        echo "dataDir=$ZOO_DATA_DIR"
        echo "dataLogDir=$ZOO_DATA_LOG_DIR"
        echo "tickTime=$ZOO_TICK_TIME"
        echo "initLimit=$ZOO_INIT_LIMIT"
        echo "syncLimit=$ZOO_SYNC_LIMIT"
        echo "maxClientCnxns=$ZOO_MAX_CLIENT_CNXNS"
        echo "standaloneEnabled=$ZOO_STANDALONE_ENABLED"
        echo "admin.enableServer=$ZOO_ADMINSERVER_ENABLED"
        echo "autopurge.purgeInterval=$ZOO_AUTOPURGE_PURGEINTERVAL"
        echo "autopurge.snapRetainCount=$ZOO_AUTOPURGE_SNAPRETAINCOUNT"
        if [[ -n "$ZOO_4LW_COMMANDS_WHITELIST" ]]; then
            echo "4lw.commands.whitelist=$ZOO_4LW_COMMANDS_WHITELIST"
        fi
        # Space-separated lists, one entry a line (entries hold no spaces); split, not
        # globbed.
        set -o noglob
        for entry in $ZOO_SERVERS $ZOO_CFG_EXTRA; do
            echo "$entry"
        done
        set +o noglob
    } > "$config.partial"
    mv -f "$config.partial" "$config"
fi

if [[ ! -f "$ZOO_DATA_DIR/myid" ]]; then
    echo "${ZOO_MY_ID:-1}" > "$ZOO_DATA_DIR/myid"
fi

exec "$@"

#!/bin/bash
# zkServer.sh of the lab's ZooKeeper stand-in image (images/zookeeper/Containerfile):
# this project's own script, not Apache's, with the subset of its commands that a
# container uses.
#
#   zkServer.sh start-foreground [zoo.cfg]  run the server in this process (exec java)
#   zkServer.sh status [zoo.cfg]            ask the server on the client port (`srvr`)
#   zkServer.sh version                     print ZooKeeper's version
#
# The configuration is $ZOOCFGDIR/zoo.cfg (ZOOCFGDIR defaults to $ZOO_CONF_DIR, /conf)
# unless a path is given. The JVM gets -Xmx${ZK_SERVER_HEAP:-1000}m, then
# $SERVER_JVMFLAGS, then $JVMFLAGS: a later flag wins, so JVMFLAGS can change the heap
# and turn off the heap dump on OutOfMemoryError. Logs go through logback
# ($ZOOCFGDIR/logback.xml), to the console unless configured otherwise; zookeeper.log.dir
# is $ZOO_LOG_DIR. Not supported: start/stop/restart as a daemon, JMX remote flags.
set -euo pipefail

ZOOKEEPER_HOME=${ZOOKEEPER_HOME:-/opt/zookeeper}
ZOOCFGDIR=${ZOOCFGDIR:-${ZOO_CONF_DIR:-/conf}}
ZOO_LOG_DIR=${ZOO_LOG_DIR:-/logs}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
CLASSPATH="$ZOOCFGDIR:$ZOOKEEPER_HOME/lib/*"

usage() {
    echo "usage: $0 {start-foreground|status|version} [zoo.cfg]" >&2
    exit 2
}

command=${1:-}
[[ -n "$command" ]] || usage
config=${2:-$ZOOCFGDIR/zoo.cfg}

case "$command" in
    start-foreground)
        read -r -a server_flags <<< "${SERVER_JVMFLAGS:-}"
        read -r -a user_flags <<< "${JVMFLAGS:-}"
        echo "Using config: $config" >&2
        exec "$JAVA" \
            "-Dzookeeper.log.dir=$ZOO_LOG_DIR" \
            "-Dzookeeper.log.file=${ZOO_LOG_FILE:-zookeeper.log}" \
            "-Dlogback.configurationFile=$ZOOCFGDIR/logback.xml" \
            -XX:+HeapDumpOnOutOfMemoryError "-XX:OnOutOfMemoryError=kill -9 %p" \
            -cp "$CLASSPATH" \
            "-Xmx${ZK_SERVER_HEAP:-1000}m" "${server_flags[@]}" "${user_flags[@]}" \
            org.apache.zookeeper.server.quorum.QuorumPeerMain "$config"
        ;;
    status)
        echo "Using config: $config" >&2
        # clientPort, else the client part of the server lines (`;[address:]port`), as
        # ZooKeeper >= 3.5 takes it. Neither: the server has no plain client port (a
        # secureClientPort only), which this command cannot ask.
        port=$(sed -n 's/^[[:space:]]*clientPort[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' \
               "$config" | tail -n 1)
        if [[ -z "$port" ]]; then
            port=$(sed -n 's/^server\.[0-9]*=[^;]*;\([^:]*:\)\{0,1\}\([0-9][0-9]*\)[[:space:]]*$/\2/p' \
                   "$config" | head -n 1)
        fi
        if [[ -z "$port" ]]; then
            echo "No plain client port in $config (secureClientPort only?)." >&2
            exit 1
        fi
        if answer=$(echo srvr | nc -w 2 127.0.0.1 "$port") && [[ "$answer" == *"Mode:"* ]]
        then
            echo "Client port found: $port."
            grep '^Mode:' <<< "$answer"
            exit 0
        fi
        echo "Error contacting service. It is probably not running." >&2
        exit 1
        ;;
    version)
        exec "$JAVA" -cp "$CLASSPATH" "-Dlogback.configurationFile=$ZOOCFGDIR/logback.xml" \
            org.apache.zookeeper.version.VersionInfoMain
        ;;
    *)
        usage
        ;;
esac

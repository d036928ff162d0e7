#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis servers the tests talk to are up; start them if they
# are down, and fail loudly if they cannot be reached (tests must never skip silently).
set -u
pg_up() { python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(s.connect_ex(("127.0.0.1", 5432)))
PY
}
redis_up() { [ "$(printf 'PING\r\n' | timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379; cat >&3; head -c 7 <&3' 2>/dev/null)" = "+PONG"$'\r' ]; }

wait_for() { for _ in $(seq 1 30); do "$1" && return 0; sleep 0.5; done; return 1; }

if ! pg_up; then
  echo "PostgreSQL is down; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_for pg_up || { echo "FATAL: PostgreSQL on 127.0.0.1:5432 cannot be reached" >&2; exit 1; }
fi
if ! redis_up; then
  echo "Redis is down; starting it"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
  wait_for redis_up || { echo "FATAL: Redis on 127.0.0.1:6379 cannot be reached" >&2; exit 1; }
fi
echo "PostgreSQL and Redis are up"

#!/usr/bin/env bash
# Start the local services `make test` needs when they are down: PostgreSQL on 127.0.0.1:5432,
# MariaDB on 127.0.0.1:3306 and Redis on 127.0.0.1:6379 (the Celery broker of the distributed
# stack); Debian packages, as on this machine kind. Says what is missing when it cannot start them.
set -euo pipefail

wait_for() { # name, check command...
  local name=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "services: $name did not come up within 30 s" >&2; return 1
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
    wait_for PostgreSQL pg_up
  else
    echo "services: PostgreSQL is needed on 127.0.0.1:5432 with trust auth for user postgres" >&2
    echo "          (Debian: apt-get install postgresql, then pg_ctlcluster ... main start)" >&2
    exit 1
  fi
fi

maria_up() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping; }
if ! maria_up; then
  if [ -x /usr/sbin/mariadbd ]; then
    echo "services: starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_for MariaDB maria_up
  else
    echo "services: MariaDB is needed on 127.0.0.1:3306 (root, no password)" >&2
    echo "          (Debian: apt-get install mariadb-server)" >&2
    exit 1
  fi
fi
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "services: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/dataset-ops.log
    wait_for Redis redis_up
  else
    echo "services: Redis is needed on 127.0.0.1:6379 (Debian: apt-get install redis-server)" >&2
    exit 1
  fi
fi
echo "services: PostgreSQL, MariaDB and Redis are up"

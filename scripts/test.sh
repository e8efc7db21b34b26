#!/usr/bin/env bash
# Installs the project with its test extra into .venv, then runs the linters, the type checker and the tests.
# When the machine has PostgreSQL (Debian's postgresql package) and DOOPAGE_SHEETS_TEST_PG is not set, it
# starts the server, makes a throwaway test database and role, and drops them afterwards; tests that need
# PostgreSQL skip with a reason only where none can be started (CI=true turns that skip into a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

# Runs psql as the postgres superuser (PostgreSQL refuses to run as root; the Debian tools switch user).
as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        sudo -n -u postgres -- "$@"
    fi
}

start_postgres() {
    command -v pg_lsclusters >/dev/null 2>&1 || { echo "test.sh: no PostgreSQL on this machine"; return 0; }
    local version cluster port
    read -r version cluster port _ < <(pg_lsclusters --no-header | head -n 1) || true
    if [ -z "${version:-}" ]; then
        echo "test.sh: PostgreSQL is installed but has no cluster (pg_createcluster makes one)"
        return 0
    fi
    if [ "$(id -u)" != 0 ] && ! sudo -n true 2>/dev/null; then
        echo "test.sh: cannot act as the postgres user here; set DOOPAGE_SHEETS_TEST_PG to a test database URL"
        return 0
    fi
    if [ "$(id -u)" = 0 ]; then
        pg_ctlcluster "$version" "$cluster" start 2>/dev/null || true  # already running is fine
    else
        sudo -n pg_ctlcluster "$version" "$cluster" start 2>/dev/null || true
    fi
    if ! pg_lsclusters --no-header | grep -Eq "^$version +$cluster +$port +online"; then
        echo "test.sh: PostgreSQL $version/$cluster would not start (see its log under /var/log/postgresql)"
        return 0
    fi
    local name="doopage_sheets_test_$$"
    local password
    password=$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(16))')
    PG_TEST_DB="$name"  # dropped at exit, whatever is made of it below
    PG_TEST_PORT="$port"
    if ! as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE ROLE $name LOGIN PASSWORD '$password';
CREATE DATABASE $name OWNER $name;
SQL
    then
        echo "test.sh: could not make a test role and database in PostgreSQL $version/$cluster"
        return 0
    fi
    export DOOPAGE_SHEETS_TEST_PG="postgresql://$name:$password@127.0.0.1:$port/$name"
    export DOOPAGE_SHEETS_TEST_PG_CLUSTER="$version $cluster"
    echo "test.sh: PostgreSQL $version/$cluster on port $port, throwaway database $name"
}

drop_postgres() {
    if [ -n "${PG_TEST_DB:-}" ]; then
        as_postgres psql -q -p "$PG_TEST_PORT" >/dev/null 2>&1 <<SQL || true
DROP DATABASE IF EXISTS $PG_TEST_DB WITH (FORCE);
DROP ROLE IF EXISTS $PG_TEST_DB;
SQL
    fi
}

PG_TEST_DB=""
if [ -z "${DOOPAGE_SHEETS_TEST_PG:-}" ]; then
    trap drop_postgres EXIT
    start_postgres
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"

#!/usr/bin/env bash
# Issue 16 item 5: N refused logins from A loopback addresses (127.0.6.1 ..) against one rampart
# binary; prints the audit records written and the time of the two audit lookups (the security
# events list, the new-IP check) on the resulting audit database, with and without the indexes.
# Usage: bench/scripts/refused_logins.sh BIN [REQUESTS] [ADDRESSES] [same|distinct]
set -euo pipefail
bin=$1; requests=${2:-100000}; addresses=${3:-200}; names=${4:-same}
per=$((requests / addresses))
dir=$(mktemp -d /tmp/refused-bench.XXXXXX)
mkdir -m 700 "$dir/data" "$dir/keys" "$dir/audit"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'audit_dir = "%s"\n' "$dir/audit" > "$dir/rampart.toml"
"$bin" serve --config "$dir/rampart.toml" --listen "127.0.0.1:$port" --data-dir "$dir/data" --key-dir "$dir/keys" \
    > "$dir/server.log" 2>&1 &
server=$!
until grep -q "rampart is listening on" "$dir/server.log"; do sleep 0.2; done
start=$(date +%s.%N)
for a in $(seq 1 "$addresses"); do
    (
        urls=()
        for i in $(seq 1 "$per"); do urls+=("https://127.0.0.1:$port/api/v1/auth/login"); done
        if [ "$names" = same ]; then user=victim; else user="guess$a"; fi
        # One curl per address, its requests sequential on one kept-alive connection.
        if [ "$names" = same ]; then
            curl -s --cacert "$dir/keys/dev-ca.pem" --interface "127.0.6.$a" \
                -H 'content-type: application/json' -d "{\"username\":\"$user\",\"password\":\"wrong password here\"}" \
                "${urls[@]}" > /dev/null
        else
            for i in $(seq 1 "$per"); do
                printf 'url = "https://127.0.0.1:%s/api/v1/auth/login"\ndata = "{\\"username\\":\\"%s-%s\\",\\"password\\":\\"wrong password here\\"}"\nnext\n' "$port" "$user" "$i"
            done > "$dir/curl-$a.cfg"
            curl -s --cacert "$dir/keys/dev-ca.pem" --interface "127.0.6.$a" \
                -H 'content-type: application/json' -K "$dir/curl-$a.cfg" > /dev/null
        fi
    ) &
    # At most 50 clients at once on a 2-core machine.
    if (( a % 50 == 0 )); then wait $(jobs -p | grep -v "^$server\$") 2>/dev/null || true; fi
done
wait $(jobs -p | grep -v "^$server\$") 2>/dev/null || true
end=$(date +%s.%N)
kill -TERM "$server"; wait "$server" || true
db="$dir/audit/audit.db"
[ -f "$db" ] || db=$(ls "$dir"/audit/*.db | head -1)
echo "requests=$requests addresses=$addresses names=$names seconds=$(echo "$end - $start" | bc)"
echo "audit_rows=$(sqlite3 "$db" 'SELECT COUNT(*) FROM audit_log')"
echo "refusal_rows=$(sqlite3 "$db" "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.login' AND outcome <> 'success'")"
echo "summarized_refusals=$(sqlite3 "$db" "SELECT COALESCE(SUM(json_extract(details, '\$.repeated')), 0) FROM audit_log")"
lookups() {
    sqlite3 "$1" <<SQL | grep -i "run time" | awk '{s += $4} END {printf "%.6f s (real, 100 x 2 lookups)\n", s}'
.timer on
$(for i in $(seq 1 100); do
    echo "SELECT seq FROM audit_log WHERE action = 'security.alert' AND seq > 0 ORDER BY seq LIMIT 100;"
    echo "SELECT EXISTS (SELECT 1 FROM audit_log WHERE action = 'auth.login' AND actor = 'nobody' AND outcome = 'success' AND ip = '127.0.6.$((i % addresses + 1))');"
done)
SQL
}
echo "lookups_as_written: $(lookups "$db")"
cp "$db" "$dir/noindex.db"
sqlite3 "$dir/noindex.db" 'DROP INDEX IF EXISTS audit_log_by_action; DROP INDEX IF EXISTS audit_log_by_actor;'
echo "lookups_without_indexes: $(lookups "$dir/noindex.db")"
cp "$db" "$dir/index.db"
sqlite3 "$dir/index.db" 'CREATE INDEX IF NOT EXISTS audit_log_by_action ON audit_log (action, seq); CREATE INDEX IF NOT EXISTS audit_log_by_actor ON audit_log (action, actor, outcome, ip);'
echo "lookups_with_indexes: $(lookups "$dir/index.db")"
rm -rf "$dir"

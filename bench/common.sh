# Shared by the bench scripts (sourced): a docker-registry of the bench's
# own on 127.0.0.1, and ratio printing. Expects $work (a scratch directory)
# and cleans up through the caller's EXIT trap (kill $(jobs -p)).

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
registry_pid=""

# Start an empty registry (stopping the previous one and wiping its data).
fresh_registry() {
    [ -n "$registry_pid" ] && { kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true; }
    rm -rf "$work/data"
    cat > "$work/registry.yml" <<YAML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $work/data } }
http: { addr: $host }
YAML
    docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
    registry_pid=$!
    until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.05; done
}

# A/B with two decimals.
ratio() { echo "$(($1 * 100 / $2 / 100)).$(printf '%02d' $(($1 * 100 / $2 % 100)))"; }

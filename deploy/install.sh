#!/usr/bin/env bash
# Installs tingfeng as a systemd service: binary, unit, config, credentials. Run as root from
# the repository root after `cargo build --release`. Safe to run again (keeps existing config
# and secrets).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/tingfeng
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }

install -m 0755 "$bin" /usr/local/bin/tingfeng
install -d -m 0755 /usr/local/share/doc/tingfeng
install -m 0644 README.md /usr/local/share/doc/tingfeng/README.md
install -m 0644 deploy/tingfeng.service /etc/systemd/system/tingfeng.service

install -d -m 0750 /etc/tingfeng /etc/tingfeng/credentials
[ -e /etc/tingfeng/sources.toml ] || install -m 0640 sources.toml /etc/tingfeng/sources.toml
[ -e /etc/tingfeng/tingfeng.env ] || install -m 0640 deploy/tingfeng.env.example /etc/tingfeng/tingfeng.env
# Random secrets unless the operator put real ones there already. Give the webhook secret
# to the receiving system; the API token to whoever may query the API.
for name in webhook-secret api-token; do
  f=/etc/tingfeng/credentials/$name
  [ -e "$f" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$f"; chmod 0600 "$f"; }
done

/usr/local/bin/tingfeng check --config /etc/tingfeng/sources.toml
systemctl daemon-reload
echo "installed. start with: systemctl enable --now tingfeng"

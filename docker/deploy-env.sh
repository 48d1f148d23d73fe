# tinyserv (added by the e2e image): above the interactive guard below, so `ssh host cmd` sees it too.
export TINYSERV_ROOT="$HOME/tinyserv"
export TINYSERV_START_PORT=5000
export PATH="/opt/tinyserv/bin:$PATH"
export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt


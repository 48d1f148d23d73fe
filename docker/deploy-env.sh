# tinyserv (added by the e2e image): above the interactive guard below, so `ssh host cmd` sees it too.
export TINYSERV_ROOT="$HOME/tinyserv"
export TINYSERV_START_PORT=5000
export PATH="/opt/tinyserv/bin:$PATH"
export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
# nginx answers the apps' domains on unprivileged ports here (80 and 443 need the systemd unit's capability).
export TINYSERV_HTTP_PORT=8080
export TINYSERV_HTTPS_PORT=8443
# Settings a test adds for itself (an ACME server of its own, say) go in this file.
[ -r "$HOME/.tinyserv-test-env" ] && . "$HOME/.tinyserv-test-env"

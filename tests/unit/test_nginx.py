"""nginx.py: the config rendered from a Plan (pure), router log lines, and the names the front door accepts."""

import json

import pytest

from tinyserv.frontdoor import nginx
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import check_domain, check_feature, check_pem, parse_scale

SITE = nginx.Site(app="myapp", port=5000, primary=(41001,), backup=(), domains=(), maintenance=False,
                  affinity=False, certs=())


def render(*sites, http=False, https=False, ipv6=False, user=None):
    plan = nginx.Plan(sites, 8080, 8443, user, ipv6, http, https)
    return nginx.render(plan, nginx.Prefix(FakeLayout()))


class FakeLayout:
    root = "/srv/ts"
    run_dir = "/srv/ts/run"


def block(text, start):
    """The stripped lines of the innermost block around (or opened by) the first line containing start."""
    lines = stripped(text)
    at = next(i for i, line in enumerate(lines) if start in line)
    opened, spans = [], []
    for i, line in enumerate(lines):
        if line.count("{") == line.count("}") and "{" in line:
            spans.append((i, i))
        elif line.endswith("{"):
            opened.append(i)
        elif line == "}":
            spans.append((opened.pop(), i))
    first, last = max((s, e) for s, e in spans if s <= at <= e)
    return lines[first:last + 1]


def stripped(text):
    return [line.strip() for line in text.splitlines()]


def test_an_app_is_served_on_its_own_port_by_its_web_instances():
    text = render(SITE)
    assert block(text, "upstream myapp.tinyserv") == [
        "upstream myapp.tinyserv {", "server 127.0.0.1:41001 max_fails=1 fail_timeout=5s;", "}"]
    server = block(text, "listen 5000;")
    assert "proxy_pass http://myapp.tinyserv;" in server
    assert 'set $tinyserv_app "myapp";' in server


def test_old_instances_are_backup_servers_while_a_switch_settles():
    text = render(SITE._replace(primary=(41002,), backup=(41001,)))
    assert block(text, "upstream myapp.tinyserv")[1:3] == [
        "server 127.0.0.1:41002 max_fails=1 fail_timeout=5s;", "server 127.0.0.1:41001 backup;"]


def test_affinity_hashes_on_a_cookie_it_sets_and_drops_the_backups_nginx_cannot_hash_with():
    text = render(SITE._replace(primary=(41001, 41002), backup=(41003,), affinity=True))
    upstream = block(text, "upstream myapp.tinyserv")
    assert "hash $tinyserv_affinity consistent;" in upstream
    assert not any("backup" in line for line in upstream)
    assert "add_header Set-Cookie $tinyserv_affinity_cookie;" in block(text, "listen 5000;")


@pytest.mark.parametrize("site, code, status", [
    (SITE._replace(primary=()), "H14", 503),
    (SITE._replace(maintenance=True), "H80", 503),
    (SITE._replace(primary=(), maintenance=True), "H80", 503),
])
def test_nginx_answers_itself_with_a_short_page_when_there_is_no_web_or_in_maintenance(site, code, status):
    text = render(site)
    server = block(text, "listen 5000;")
    assert 'set $tinyserv_code "%s";' % code in server
    assert any(line.startswith("return %d '<!doctype html>" % status) for line in server)
    assert "    upstream " not in text


def test_domains_get_a_server_on_the_http_port_and_unknown_hosts_a_404():
    text = render(SITE._replace(domains=("a.example.org", "www.example.org")), http=True)
    assert "server_name a.example.org www.example.org;" in block(text, "server_name a.example.org")
    default = block(text, "listen 8080 default_server;")
    assert any(line.startswith("return 404 ") for line in default)
    assert "proxy_pass" not in " ".join(default)
    assert "location ^~ /.well-known/acme-challenge/ {" in default


def test_without_domains_nothing_listens_on_the_http_port():
    assert "8080" not in render(SITE, http=False)


def test_certificates_serve_the_names_they_cover_on_the_https_port_and_other_names_are_refused():
    site = SITE._replace(domains=("www.example.org",), certs=(("/c/a.crt", "/c/a.key", ("www.example.org",)),))
    text = render(site, http=True, https=True)
    ssl = block(text, "listen 8443 ssl;")
    assert 'ssl_certificate "/c/a.crt";' in ssl and 'ssl_certificate_key "/c/a.key";' in ssl
    assert "server_name www.example.org;" in ssl
    assert "ssl_reject_handshake on;" in block(text, "listen 8443 ssl default_server;")


def test_an_app_whose_port_nginx_cannot_take_is_served_on_its_domains_only():
    text = render(SITE._replace(port=None, domains=("www.example.org",)), http=True)
    assert "listen 5000" not in text and "server_name www.example.org;" in text


def test_ipv6_listens_too_where_the_machine_has_it_and_root_runs_its_workers_as_itself():
    text = render(SITE, ipv6=True, user="root")
    assert "listen [::]:5000;" in block(text, "listen 5000;")
    assert "user root;" in stripped(text)


def test_every_path_is_inside_the_prefix_and_requests_are_logged_to_the_router_socket():
    text = render(SITE)
    for line in ("pid \"/srv/ts/nginx/nginx.pid\";", "error_log \"/srv/ts/nginx/logs/error.log\" crit;",
                 "proxy_temp_path \"/srv/ts/nginx/temp/proxy\";", "daemon off;"):
        assert line in stripped(text), line
    assert "access_log syslog:server=unix:/srv/ts/run/router.sock,nohostname,tag=tinyserv tinyserv_router;" in text


@pytest.mark.parametrize("path", ["/srv/my root", "/srv/a;b", "/srv/$x", "/srv/a\"b", "/srv/{x}"])
def test_a_root_nginx_would_read_as_syntax_is_refused(path):
    with pytest.raises(TinyservError, match="nginx cannot use the path"):
        nginx.quoted(path)


def datagram(**fields):
    return b"<190>Nov 28 05:41:35 tinyserv: " + json.dumps(dict({"app": "myapp"}, **fields)).encode()


def test_a_router_datagram_becomes_a_heroku_style_line_naming_the_instance():
    fields = nginx.router_fields(datagram(code="", method="GET", path='/a"b', host="www.example.org", status="200",
                                          bytes="123", service="0.012", connect="0.001", upstream="127.0.0.1:41001",
                                          fwd="10.0.0.1", request_id="abc", protocol="http"))
    assert nginx.upstream_port(fields) == 41001
    assert nginx.router_line(fields, "web.1") == (
        'at=info method=GET path="/a"b" host=www.example.org request_id=abc fwd="10.0.0.1" dyno=web.1 '
        'connect=1ms service=12ms status=200 bytes=123 protocol=http')


def test_a_page_nginx_answered_itself_is_an_error_line_with_heroku_s_code():
    fields = nginx.router_fields(datagram(code="H80", method="GET", path="/", host="h", status="503", bytes="9",
                                          service="0.000", connect="", upstream="", fwd="1", request_id="r",
                                          protocol="http"))
    line = nginx.router_line(fields, None)
    assert line.startswith('at=error code=H80 desc="Maintenance mode" method=GET')
    assert "dyno=- connect=0ms" in line


def test_the_last_upstream_tried_is_the_one_that_answered():
    assert nginx.upstream_port({"upstream": "127.0.0.1:41001, 127.0.0.1:41002"}) == 41002
    assert nginx.upstream_port({"upstream": ""}) is None


@pytest.mark.parametrize("data", [b"", b"garbage", b"<190>Nov 28 tinyserv: not json", b'<190>x tinyserv: {"app": ""}'])
def test_datagrams_that_are_not_router_lines_are_ignored(data):
    assert nginx.router_fields(data) is None


@pytest.mark.parametrize("name", ["www.example.org", "a.b", "xn--bcher-kva.example", "a-b.c0.org", "x" * 63 + ".org"])
def test_host_names_nginx_can_route_by_are_accepted(name):
    assert check_domain(name) == name


@pytest.mark.parametrize("name, words", [
    ("*", "use a host name"), ("*.example.org", "no wildcards"), ("..", "use a host name"),
    ("a" * 300, "1 to 253 characters"), ("bücher.example", "xn--"), ("a b.org", "use a host name"),
    (";", "use a host name"), ("example", "use a host name"), ("Www.Example.org", "lowercase"),
    ("-x.org", "use a host name"), ("x.org.", "use a host name"), ("1.2.3.4", "use a host name"),
    ("x" * 64 + ".org", "63 per label"), ("", "1 to 253"), ("a\nb.org", "use a host name"),
])
def test_hostile_domain_names_are_refused_in_one_line(name, words):
    with pytest.raises(TinyservError) as error:
        check_domain(name)
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("words, message", [
    (["web=21"], "web runs at most 20"), (["web=101"], "web runs at most 20"), (["web=99999"], "web runs at most 20"),
    (["worker=101"], "at most 100"),
])
def test_scaling_is_refused_past_the_limits_of_a_type(words, message):
    with pytest.raises(TinyservError, match=message):
        parse_scale(words)


def test_twenty_web_instances_are_fine():
    assert parse_scale(["web=20", "worker=100"]) == {"web": 20, "worker": 100}


@pytest.mark.parametrize("text, kind, message", [
    ("garbage", "cert", "not in PEM form"), ("-----BEGIN CERTIFICATE-----\nx", "cert", "not in PEM form"),
    ("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", "key", "not in PEM form"),
    ("x\0y", "cert", "PEM text"), ("x" * 70000, "key", "at most 64 KiB"),
])
def test_what_is_not_pem_is_refused_before_anything_travels(text, kind, message):
    with pytest.raises(TinyservError, match=message):
        check_pem(text, kind)


def test_only_known_features_can_be_enabled():
    assert check_feature("http-session-affinity") == "http-session-affinity"
    with pytest.raises(TinyservError, match="the features are http-session-affinity"):
        check_feature("preboot")


def test_one_server_per_app_takes_its_own_port_and_its_domains_and_one_log_takes_every_request():
    other = SITE._replace(app="other", port=5001, primary=(41002,))
    text = render(SITE._replace(domains=("www.example.org",)), other, http=True)
    server = block(text, "listen 5000;")
    assert "listen 8080;" in server and "server_name www.example.org;" in server
    assert "proxy_pass http://myapp.tinyserv;" in server
    assert "server_name" not in " ".join(block(text, "listen 5001;"))  # no domains: its own port only
    assert [line for line in stripped(text) if line == "server {"] == ["server {"] * 3  # 2 apps, the default
    assert [line for line in stripped(text) if line.startswith("access_log")] == [
        "access_log syslog:server=unix:/srv/ts/run/router.sock,nohostname,tag=tinyserv tinyserv_router;"]

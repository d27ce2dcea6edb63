"""Regex captures side by side with real nginx: $1..$9 and named groups of location and
server_name regexes, and nginx's rule that the last regex that matched sets them."""

import pytest

from tests.http.test_nginx_parity_maps import running_pair, same_answer

pytestmark = pytest.mark.nginx

SITE = r"""
user root;          # the tests' temporary folders are readable by root only
worker_processes 1;
error_log {dir}/error.log notice;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    default_type text/plain;
    upstream app {{ server {backend}; }}
    map $1 $first {{ default other; abc "was-abc"; }}
    map $arg_m $mapped {{ default none; ~^(?<mword>[a-z]+)-(\d+)$ "m-$2"; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        root {dir}/html;

        location ~ ^/ret/(\w+)/(?<num>\d+)$ {{ return 200 "ret $1 $2 $num [$3] $10 $first\n"; }}
        location ~ ^/px/(?<rest>.*)$ {{
            proxy_pass http://app/p/$rest$is_args$args;
            proxy_set_header X-Cap "$1";
        }}
        location ~ ^/pxn/([a-z]+)/(.*)$ {{ proxy_pass http://app/$2/$1; }}
        location ~* ^/HDR/(.+)$ {{ add_header X-Cap "h-$1"; return 200 "hdr\n"; }}
        location ~ ^/al/(\w+)/(.*)$ {{ alias {dir}/sites/$1/$2; }}
        location ~ ^/rt/(\w+)/ {{ root {dir}/sites/$1; rewrite ^/rt/\w+/(.*)$ /$1 break; }}
        location ~ ^/last/(\w+)$ {{
            if ($arg_x ~ ^(\d+)-(\d+)$) {{ return 200 "if $1 $2\n"; }}
            if ($arg_y ~ ^(\d+)$) {{ }}
            if ($arg_z ~ nogroups) {{ }}
            if ($arg_w ~ ^no(\d+)$) {{ }}
            set $mv $mapped;       # nginx fails "$1 $mapped $1" in one value (captures change)
            return 200 "last $1 [$2] $mv\n";
        }}
        location ~ ^/nest/(\w+) {{
            location ~ /x/(\d+)$ {{ return 200 "inner $1\n"; }}
            location ~ /y/ {{ return 200 "outer $1\n"; }}
            return 200 "nest $1\n";
        }}
        location /rw/ {{ rewrite ^/rw/(.*)$ /ret/$1/7 last; }}
        location /rwp/ {{ rewrite ^/rwp/(\w+)$ /plain last; }}
        location = /plain {{ return 200 "plain [$1]\n"; }}
        location ~ ^/err/(\w+)$ {{ error_page 404 /errpage; return 404; }}
        location = /errpage {{ return 200 "err $1\n"; }}
        location /noregex {{ return 200 "none [$1] [$num]\n"; }}
        location ~ ^/mapped/(abc|xyz)$ {{ return 200 "map $first\n"; }}
        location /rvp/ {{ set $target app; rewrite ^/rvp/(.*)$ /moved/$1 break; proxy_pass http://$target; }}
        # "break" ends the script before "set": an empty host, nginx's 500.
        location /rvx/ {{ rewrite ^/rvx/(.*)$ /moved/$1 break; set $nothing app; proxy_pass http://$nothing; }}
        location /vp/ {{ set $target app; proxy_pass http://$target; }}
        location /nores/ {{ proxy_pass http://$arg_h; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name ~^(?<sub>[a-z]+)\.cap\.test$ ~^(www)\.(num)\.test$;

        location / {{ return 200 "srv [$1] [$2] [$sub]\n"; }}
        location ~ ^/loc/(\w+)$ {{ return 200 "loc $1 [$2] $sub\n"; }}
        location /px/ {{ proxy_pass http://app/$sub$uri; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name exact.test ~^(?<any>.+)\.test$;
        location / {{ return 200 "exact [$any]\n"; }}
    }}
}}
"""

CASES = [
    ("GET", "/ret/abc/42", {}, None),
    ("GET", "/ret/xyz/7", {}, None),
    ("GET", "/px/some/where?a=1", {}, None),
    ("GET", "/px/", {}, None),
    ("GET", "/pxn/name/path", {}, None),
    ("GET", "/hdr/Value", {}, None),
    ("GET", "/al/one/file.txt", {}, None),
    ("GET", "/al/two/file.txt", {}, None),
    ("GET", "/al/one/missing.txt", {}, None),
    ("GET", "/rt/one/file.txt", {}, None),
    ("GET", "/last/word", {}, None),
    ("GET", "/last/word?x=1-2", {}, None),
    ("GET", "/last/word?y=5", {}, None),                 # a later regex replaces $1
    ("GET", "/last/word?z=nogroups", {}, None),          # no groups: $1 emptied
    ("GET", "/last/word?w=yes", {}, None),               # no match: $1 emptied
    ("GET", "/last/word?w=no7", {}, None),               # the last if matched
    ("GET", "/last/word?m=abc-9", {}, None),             # a map read later replaces $1
    ("GET", "/nest/a/x/5", {}, None),
    ("GET", "/nest/b/y/", {}, None),
    ("GET", "/nest/c", {}, None),
    ("GET", "/rw/abc", {}, None),
    ("GET", "/rwp/abc", {}, None),
    ("GET", "/err/abc", {}, None),
    ("GET", "/noregex", {}, None),
    ("GET", "/mapped/abc", {}, None),
    ("GET", "/mapped/xyz", {}, None),
    ("GET", "/rvp/a%20b?q=1", {}, None),                 # rewritten: $uri escaped, $args
    ("GET", "/rvx/a", {}, None),
    ("GET", "/vp/a%20b?q=1", {}, None),                  # no URI part: the request's target
    ("GET", "/nores/x?h=nowhere.invalid", {}, None),     # no resolver: 502
    ("GET", "/", {"Host": "abc.cap.test"}, None),
    ("GET", "/", {"Host": "ABC.Cap.Test:80"}, None),
    ("GET", "/", {"Host": "www.num.test"}, None),
    ("GET", "/loc/here", {"Host": "abc.cap.test"}, None),
    ("GET", "/loc/here", {"Host": "www.num.test"}, None),
    ("GET", "/px/q?x=1", {"Host": "abc.cap.test"}, None),
    ("GET", "/", {"Host": "exact.test"}, None),          # chosen by its exact name
    ("GET", "/", {"Host": "other.test"}, None),
]


def _files(folder):
    for site, text in (("one", "first site\n"), ("two", "second site\n")):
        (folder / "sites" / site).mkdir(parents=True)
        (folder / "sites" / site / "file.txt").write_text(text)
    (folder / "html").mkdir()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with running_pair(tmp_path_factory, SITE, "captures", _files) as both:
        yield both


@pytest.mark.parametrize("method,target,headers,body", CASES)
def test_same_answer_as_nginx(pair, method, target, headers, body):
    nginx, gateway = pair
    same_answer(nginx, gateway, method, target, headers, body)


def test_captures_answer_what_nginx_answers(pair):
    """Spot checks, so that a test cannot pass with both sides empty."""
    from tests.http.test_nginx_parity import fetch
    _, gateway = pair
    assert fetch(gateway.port, "GET", "/ret/abc/42", {}, None)[2] == \
        b"ret abc 42 42 [] abc0 was-abc\n"
    # A later "if" regex that does not match empties $1 (nginx: r->ncaptures = 0).
    assert fetch(gateway.port, "GET", "/last/word?y=5", {}, None)[2] == b"last  [] none\n"
    assert fetch(gateway.port, "GET", "/last/word?w=no7", {}, None)[2] == b"last 7 [] none\n"
    assert fetch(gateway.port, "GET", "/", {"Host": "abc.cap.test"}, None)[2] == \
        b"srv [abc] [] [abc]\n"     # a named group is numbered too
    assert fetch(gateway.port, "GET", "/al/two/file.txt", {}, None)[2] == b"second site\n"

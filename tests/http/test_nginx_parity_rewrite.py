"""The rewrite module side by side with real nginx: rewrite, return, set, if, break."""

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
    map $arg_m $mapped {{ default none; ~^(?<word>[a-z]+)$ "w-$word"; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        root {dir}/html;
        rewrite_log on;

        rewrite ^/old/(.*)$ /new/$1 last;
        rewrite ^/srvperm/(.*)$ /target/$1 permanent;
        rewrite ^/away$ http://example.com/there;
        rewrite ^/schemed$ $scheme://$host/s?x=1;
        set $from_server "srv";
        if ($http_x_block) {{ return 403 "blocked\n"; }}

        location /new/ {{ return 200 "new $uri $args $from_server\n"; }}
        location /r/ {{
            rewrite ^/r/last/(.*)$ /new/$1 last;
            rewrite ^/r/break/(.*)$ /broken/$1 break;
            rewrite ^/r/chain/(.*)$ /r/chained/$1;
            rewrite ^/r/chained/(.*)$ /new/chained-$1;
            rewrite ^/r/noargs$ /new/noargs? last;
            rewrite ^/r/addargs$ /new/addargs?a=1 last;
            rewrite ^/r/redir/(.*)$ /new/$1 redirect;
            rewrite ^/r/named/(?<first>[^/]+)/(\d+)$ /new/$first-$2 last;
            rewrite ^/r/qargs/(.*)$ /new/q?v=$1 last;
            rewrite ^/r/qpath/(.*)$ /new/$1 last;
            return 200 "fell $uri\n";
        }}
        location /px/ {{
            rewrite ^/px/last/(.*)$ /p2/$1 last;
            rewrite ^/px/break/(.*)$ /up/$1 break;
            proxy_pass http://app;
            proxy_set_header X-Set $mapped;
        }}
        location /pb/ {{
            rewrite ^/pb/(.*)$ /changed/$1;
            break;
            proxy_pass http://app/base/;
        }}
        location /pu/ {{
            rewrite ^/pu/(.*)$ /inner/$1 break;
            proxy_pass http://app/base/;
        }}
        location /p2/ {{ proxy_pass http://app/two/; }}
        location /loop/ {{ rewrite ^/loop/(.*)$ /loop/x$1 last; }}
        location /set/ {{
            set $a "one";
            set $b "$a-two-$arg_q";
            return 200 "$a $b $mapped $word\n";
        }}
        location /if/ {{
            if ($arg_x = yes) {{ return 200 "eq\n"; }}
            if ($arg_x != no) {{ set $flag "ne"; }}
            if ($http_user_agent ~* "^(curl|wget)/(\d+)") {{ return 200 "ua $1 $2 $flag\n"; }}
            if ($arg_y !~ ^[0-9]+$) {{ return 400 "bad y $flag\n"; }}
            if ($arg_z) {{ add_header X-Z "z-$arg_z"; return 200 "z\n"; }}
            if (-f $document_root/file.txt) {{ set $flag "$flag file"; }}
            if (!-f $document_root/nope.txt) {{ set $flag "$flag nofile"; }}
            if (-d $document_root) {{ set $flag "$flag dir"; }}
            if (-e $document_root/file.txt) {{ set $flag "$flag exists"; }}
            return 200 "end $flag\n";
        }}
        location /ifproxy/ {{
            if ($arg_to = two) {{ proxy_pass http://app; }}
            if ($arg_hdr) {{ add_header X-If "in-if"; }}
            return 200 "outside\n";
        }}
        location /ifinherit/ {{
            proxy_pass http://app/inh/;
            if ($arg_h) {{ add_header X-H "h"; }}
        }}
        location /args/ {{
            if ($request_method = POST) {{ return 405; }}
            set $args "replaced=1&$args";
            proxy_pass http://app;
        }}
        location /brk/ {{
            set $v "before";
            break;
            set $v "after";
            return 200 "$v\n";
        }}
        location /uninit/ {{ return 200 "<$never_set>\n"; }}
        location /quiet/ {{ uninitialized_variable_warn off; return 200 "<$quiet_set>\n"; }}
        location /sets/ {{ set $never_set 1; set $quiet_set 2; return 204; }}
        location /static/ {{
            rewrite ^/static/(.*)$ /$1 break;
        }}
    }}
}}
"""

CASES = [
    ("GET", "/old/a?q=1", {}, None),                  # server rewrite, last
    ("GET", "/srvperm/x?k=v", {}, None),              # permanent, args appended
    ("GET", "/away?k=v", {}, None),                   # URL replacement: 302
    ("GET", "/schemed?k=v", {}, None),                # $scheme: 302, "&" for args
    ("GET", "/new/plain", {"X-Block": "1"}, None),     # server-level if + return
    ("GET", "/r/last/a?b=2", {}, None),
    ("GET", "/r/break/a", {}, None),                  # break then static 404
    ("GET", "/r/chain/z", {}, None),                  # no flag: the next rewrite sees it
    ("GET", "/r/noargs?drop=1", {}, None),
    ("GET", "/r/addargs?keep=2", {}, None),
    ("GET", "/r/redir/q?w=3", {}, None),
    ("GET", "/r/named/abc/42", {}, None),
    ("GET", "/r/other", {}, None),
    ("GET", "/r/redir/a%20b%26c?w=3", {}, None),      # captures re-escaped in a redirect
    ("GET", "/r/redir/plain+x", {}, None),
    ("GET", "/r/redir/a%3Fb%23c%25d", {}, None),
    ("GET", "/r/qargs/a%26b%20c", {}, None),         # and after "?" of an internal rewrite
    ("GET", "/r/qpath/a%20b", {}, None),             # but not in the path part
    ("GET", "/px/last/thing?a=1", {}, None),          # last into a plain proxy location
    ("GET", "/px/break/thing?a=1&m=hello", {}, None),  # break: the rewritten URI is sent
    ("GET", "/px/plain%20x?m=9", {}, None),           # no rewrite: sent as received
    ("GET", "/pu/deep/er?x=1", {}, None),             # break with a URI part
    ("GET", "/pb/q?x=2", {}, None),                   # "break" after a changed URI
    ("GET", "/loop/a", {}, None),                     # 10 cycles: 500
    ("GET", "/set/?q=7&m=word", {}, None),
    ("GET", "/if/?x=yes", {}, None),
    ("GET", "/if/?x=maybe", {"User-Agent": "curl/8.1"}, None),
    ("GET", "/if/?x=no&y=abc", {}, None),
    ("GET", "/if/?x=no&y=12&z=9", {}, None),
    ("GET", "/if/?x=no&y=12", {}, None),
    ("GET", "/ifproxy/p?to=two", {}, None),
    ("GET", "/ifproxy/p?hdr=1", {}, None),
    ("GET", "/ifproxy/p", {}, None),
    ("GET", "/ifinherit/a?h=1", {}, None),
    ("GET", "/ifinherit/a", {}, None),
    ("GET", "/brk/", {}, None),
    ("GET", "/args/a?b=2", {}, None),                  # set $args: the upstream sees them
    ("POST", "/args/a", {}, b"x"),
    ("GET", "/static/file.txt", {}, None),
    ("GET", "/uninit/", {}, None),
    ("GET", "/quiet/", {}, None),
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with running_pair(tmp_path_factory, SITE, "rewrite", _site_files) as both:
        yield both


def _site_files(directory):
    html = directory / "html"
    html.mkdir(exist_ok=True)
    (html / "file.txt").write_text("the file\n")


@pytest.mark.parametrize("method, target, headers, body", CASES, ids=[c[1] for c in CASES])
def test_rewrite_same_as_nginx(pair, method, target, headers, body):
    same_answer(*pair, method, target, headers, body)


def test_cycle_logged_like_nginx(pair):
    nginx, gateway = pair
    line = 'rewrite or internal redirection cycle while processing "/loop/xxxxxxxxxxxa"'
    assert line in (nginx.dir / "error.log").read_text()
    assert line in gateway.errors()


def test_rewrite_log_lines_like_nginx(pair):
    nginx, gateway = pair
    wanted = ['"^/old/(.*)$" matches "/old/a"', 'rewritten data: "/new/a", args: "q=1"']
    nginx_log = (nginx.dir / "error.log").read_text()
    for text in wanted:
        assert text in nginx_log
        assert text in gateway.errors()


def test_uninitialized_variable_warned_like_nginx(pair):
    nginx, gateway = pair
    same_answer(nginx, gateway, "GET", "/uninit/", {}, None)
    nginx_log = (nginx.dir / "error.log").read_text()
    assert '[warn]' in nginx_log and 'using uninitialized "never_set" variable' in nginx_log
    assert 'using uninitialized "never_set" variable' in gateway.errors()
    # uninitialized_variable_warn off: neither says anything.
    assert "quiet_set" not in nginx_log
    assert "quiet_set" not in gateway.errors()

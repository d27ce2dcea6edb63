"""The compiled rewrite scripts, templates and maps (_fastpath/rewrite.pyx, variables.pyx)
against their pure-Python twins (gateway/http/rewrite.py, variables.py, maps.py).

Both get the same scripts and the same requests (of either Request class) and must end the
same way and leave the request in the same state: URI, args, how it was rewritten, the
variables set and the captures held.  The compiled objects are built here from the twins
the app holds, so that the test runs with GATEWAY_NO_EXTENSIONS=1 too.
"""

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import load_config
from gateway.http import variables
from gateway.http.captures import NUMBERED
from gateway.http.parser_py import split_target
from gateway.http.request import Request as PyRequest
from gateway.http.server import WorkerApp

CONFIG = r"""
events { worker_connections 64; }
http {
    map $uri $route_tag { default app; ~^/static/ static; /exact exact; ~^/(s)mall "$1-map"; }
    map $http_host $by_host { hostnames; default none; *.example.com wild; example.org org; }
    map $arg_k $named { default ""; ~^(?<first>[a-z])(?<rest>.*)$ "$first:$rest"; }
    upstream b { server 127.0.0.1:9; }
    server {
        listen 127.0.0.1:8080;
        server_name parity.test;
        location / {
            if ($request_method = POST) { return 405; }
            if ($arg_v ~ ^(\d+)$) { set $ver v$1; }
            if ($arg_n !~ ^x) { set $nx "no-x $1"; }
            if ($route_tag = static) { rewrite ^ /s/static break; }
            if ($arg_deny) { add_header X-If yes; return 403 "denied $arg_deny"; }
            if (-e /) { set $root_exists yes; }
            if ($named != "") { set $got "$named $first $rest"; }
            rewrite ^/legacy/(.*)$ /$1 permanent;
            rewrite ^/go/(.*)$ /$1?from=go redirect;
            rewrite ^/last/(.*)$ /$1 last;
            rewrite ^/args/(.*)$ /x?a=$1 break;
            rewrite ^/drop/(.*)$ /d/$1? break;
            rewrite ^/(small|big)$ /$1 break;
            rewrite ^/plain/(.*)$ /p/$1;
            rewrite (?i)^/CASE/(.*)$ /case/$1;
            rewrite ^/p/(.*)$ /q/$1$is_args$args;
            rewrite ^/setargs/ /s;
            set $tag "$route_tag $by_host $1";
            if ($uri = /s) { set $args "k=$arg_k&s=1"; }
            if ($uri = /stop) { break; }
            rewrite ^/after/(.*)$ /a/$1 break;
            proxy_pass http://b;
            proxy_set_header X-Route $route_tag;
        }
    }
}
"""


def compiled(name):
    try:
        return importlib.import_module(f"_fastpath.{name}")
    except ImportError as exc:
        pytest.fail(f"_fastpath.{name} is not built ({exc}): run `make extensions`")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rewrite")
    path = tmp / "gateway.conf"
    path.write_text(CONFIG)

    class Loop:
        time = staticmethod(lambda: 0.0)

    return WorkerApp(load_config(str(path), str(tmp)), Loop())


def make_request(cls, app, method, target, host):
    uri, args, request_uri = split_target(target.encode("utf-8"))
    request = cls(method, request_uri, uri, args, 11, [(b"host", b"Host", host.encode())])
    request.host = host
    request.remote_addr = "127.0.0.1"
    request.server_name = "parity.test"
    server = app.config.http.servers[0]
    request.server = server
    request.location = server.router.match(uri)
    return request


def state(request):
    """What a script may change, captures as their groups."""
    values = dict(getattr(request, "vars", None) or {})
    match = values.pop(NUMBERED, None)
    groups = None if match is None else (match.re.pattern, match.group(0), match.groups())
    return (request.uri, request.args, getattr(request, "rewritten", None), groups, values)


def outcome(result):
    end, value, active = result
    return end, value, id(active)


def request_classes():
    return [PyRequest, compiled("request").Request]


text = st.lists(st.sampled_from(["/", "legacy", "go", "last", "args", "drop", "small",
                                         "plain", "p", "CASE", "static", "exact", "setargs",
                                         "stop", "after", "x", "%20", "%2F", "+", "é", "€", "a"]),
                max_size=6).map("".join)
query = st.lists(st.sampled_from(["v=12", "n=x", "n=y", "deny=1", "k=ab", "k=", "&",
                                          "z", "=", "%41", "+"]), max_size=4).map("".join)


@settings(max_examples=600, deadline=None)
@given(path=text, args=query, method=st.sampled_from(["GET", "POST", "HEAD"]),
       host=st.sampled_from(["parity.test", "a.example.com", "example.org", "x"]),
       request_class=st.integers(0, 1))
def test_scripts_end_as_the_twin_ends_them(app, path, args, method, host, request_class):
    twin = app.config.http.servers[0].locations[0].plan.program
    twin = getattr(twin, "spec", twin)
    program = compiled("rewrite").Program(twin)
    cls = request_classes()[request_class]
    target = "/" + path + ("?" + args if args else "")
    twin_request = make_request(cls, app, method, target, host)
    request = make_request(cls, app, method, target, host)
    expected = outcome(twin.run(twin_request))
    assert outcome(program.run(request)) == expected
    assert state(request) == state(twin_request)
    # What the proxied request reads afterwards: the map header and captures.
    template = variables.compile_template("$route_tag|$1|$2|$tag|$uri?$args|$request_uri")
    rendered = compiled("variables").Template(template).render_py(request)
    assert rendered == template.render(twin_request)


@settings(max_examples=300, deadline=None)
@given(path=text, args=query, host=st.sampled_from(["parity.test", "a.example.com",
                                                    "B.Example.Com.", "example.org", ""]))
def test_maps_find_what_the_twin_finds(app, path, args, host):
    for name in ("route_tag", "by_host", "named"):
        twin = variables._user_evaluators[name]
        twin = getattr(twin, "spec", twin)
        evaluate = compiled("variables").MapVariable(twin)
        for cls in request_classes():
            twin_request = make_request(cls, app, "GET", "/" + path + ("?" + args if args else ""), host)
            request = make_request(cls, app, "GET", "/" + path + ("?" + args if args else ""), host)
            assert evaluate(request) == twin(twin_request)
            assert state(request) == state(twin_request)


@pytest.mark.parametrize("pattern, prefix", [
    (r"^/legacy/(.*)$", "/legacy/"), (r"^/(small)$", "/"), (r"^/static/", "/static/"),
    (r"^ab?c", "a"), (r"^a|b", None), (r"(?i)^/case", None), (r"/x", None), (r"^(a)", None),
    (r"^\.x", ".x"), (r"^é+", None), (r"^", None),
])
def test_anchored_prefix(pattern, prefix):
    import re
    assert compiled("variables").anchored_prefix(re.compile(pattern)) == prefix


def test_rewrite_log_scripts_stay_with_the_twin(tmp_path):
    path = tmp_path / "gateway.conf"
    path.write_text(CONFIG.replace("location / {", "location / { rewrite_log on;"))

    class Loop:
        time = staticmethod(lambda: 0.0)

    app = WorkerApp(load_config(str(path), str(tmp_path)), Loop())
    from gateway.http.rewrite import Program
    assert type(app.config.http.servers[0].locations[0].plan.program) is Program
    with pytest.raises(ValueError):
        compiled("rewrite").Program(app.config.http.servers[0].locations[0].plan.program)


def test_the_app_runs_the_twins_selected(app):
    """Built and not disabled, scripts and maps run compiled (see compiled() in rewrite.py);
    with GATEWAY_NO_EXTENSIONS=1, the pure-Python twins."""
    from gateway._select import extensions_disabled
    from gateway.http.maps import MapVariable
    from gateway.http.rewrite import Program
    program = app.config.http.servers[0].locations[0].plan.program
    evaluator = variables._user_evaluators["route_tag"]
    if extensions_disabled():
        assert (type(program), type(evaluator)) == (Program, MapVariable)
    else:
        assert type(program) is compiled("rewrite").Program
        assert type(evaluator) is compiled("variables").MapVariable

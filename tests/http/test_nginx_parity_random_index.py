"""random_index side by side with real nginx: a directory URI is answered by one of its files
(never a hidden one, a directory or a dangling link), more than one of them over many requests,
and directories with no file to pick are left to index/autoindex with nginx's status."""

import os

import pytest

from tests.http.test_nginx_parity_autoindex import fetch
from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

CONFIG = """
user root;
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /pick/ {{ random_index on; }}
        location /aliased/ {{ alias {root}/pick/; random_index on; }}
        location /empty/ {{ random_index on; }}
        location /hidden/ {{ random_index on; }}
        location /dirs/ {{ random_index on; autoindex on; }}
        location /missing/ {{ random_index on; }}
        location /off/ {{ random_index on; location /off/inner/ {{ random_index off; }} }}
        location /nested/ {{ random_index on; location /nested/pick/ {{ alias {root}/pick/; }} }}
    }}
}}
"""

FILES = {"one.txt": "1\n", "two.html": "2\n", "three": "3\n", "four.txt": "4\n"}
CASES = [("GET", "/empty/"), ("GET", "/hidden/"), ("GET", "/dirs/"), ("GET", "/missing/"),
         ("POST", "/pick/"), ("DELETE", "/pick/"), ("GET", "/pick"), ("GET", "/off/inner/"),
         ("HEAD", "/pick/"), ("GET", "/pick/one.txt"), ("GET", "/nested/")]


def make_tree(root):
    pick = root / "pick"
    pick.mkdir(parents=True)
    for name, text in FILES.items():
        (pick / name).write_text(text)
    (pick / ".secret").write_text("hidden\n")
    (pick / "subdir").mkdir()
    os.symlink("missing", pick / "dangling")
    os.symlink("subdir", pick / "dir-link")
    (root / "empty").mkdir()
    (root / "hidden").mkdir()
    (root / "hidden" / ".only").write_text("x")
    (root / "hidden" / "index.html").mkdir()        # a directory named like the index
    (root / "dirs").mkdir()
    (root / "dirs" / "a").mkdir()
    (root / "off" / "inner").mkdir(parents=True)
    (root / "off" / "inner" / "index.html").write_text("index\n")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("random") / "site"
    make_tree(root)
    return root


@pytest.fixture(scope="module", params=["nginx", "gateway"])
def server(request, tree, tmp_path_factory):
    from tests.support.processes import Gateway, Nginx
    kind = Nginx if request.param == "nginx" else Gateway
    port = free_port()
    folder = tmp_path_factory.mktemp(request.param)
    started = kind(folder, CONFIG.format(port=port, root=tree), port)
    yield request.param, port
    started.stop()


@pytest.mark.parametrize("path", ["/pick/", "/aliased/", "/nested/pick/", "/pick/?a=1"])
def test_answers_are_the_directorys_files(server, path):
    _name, port = server
    bodies = set()
    for _ in range(40):
        status, _fields, body = fetch(port, "GET", path, 11)
        assert status == 200
        bodies.add(body.decode())
    assert bodies <= set(FILES.values())
    assert len(bodies) > 1


def test_content_type_follows_the_picked_file(server):
    _name, port = server
    for _ in range(20):
        _status, fields, body = fetch(port, "GET", "/pick/", 11)
        want = "text/html" if body == b"2\n" else "text/plain"
        assert fields["content-type"] == want


_answers = {}


@pytest.mark.parametrize("method,path", CASES)
def test_same_status_as_nginx(server, method, path):
    name, port = server
    status, fields, body = fetch(port, method, path, 11)
    if method in ("GET", "HEAD") and status == 200 and path.startswith("/pick/"):
        body = b"any file"
    if fields.get("location"):
        fields["location"] = fields["location"].replace(f":{port}/", ":PORT/")
    _answers.setdefault((method, path), {})[name] = (status, fields.get("location"), body)
    if len(_answers[(method, path)]) == 2:
        assert _answers[(method, path)]["gateway"] == _answers[(method, path)]["nginx"]

"""disable_symlinks side by side with real nginx: a symlinked file (403), a symlinked directory
on the way (404, nginx's ENOTDIR), one index file behind a symlinked directory, links whose
owner differs from their target's (if_not_owner), from= with a fixed path and a variable, and
try_files, answered with the same status and body."""

import os
import socket

import pytest

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
        location /off/ {{ alias {root}/tree/; }}
        location /on/ {{ alias {root}/tree/; disable_symlinks on; }}
        location /owner/ {{ alias {root}/tree/; disable_symlinks if_not_owner; }}
        location /from/ {{ alias {root}/tree/; disable_symlinks on from={root}/tree/linkdir; }}
        location /fromroot/ {{ alias {root}/tree/; disable_symlinks on from={root}/tree; }}
        location /fromvar/ {{ disable_symlinks on from=$document_root; }}
        location /listed/ {{ alias {root}/tree/; disable_symlinks on; autoindex on; }}
        location /tf/ {{ disable_symlinks on; try_files $uri /fallback.txt; }}
    }}
}}
"""

PATHS = ["real/file.txt", "link-file", "linkdir/file.txt", "linkdir/", "linkdir",
         "real/", "dir/link-in-dir", "missing", "linkdir/missing", "same-owner",
         "other-owner", "dangling", "real/index.html", "noindex/", "linknoindex/",
         "real/sub/deep.txt", "linkdir/sub/deep.txt"]


def make_tree(root):
    tree = root / "tree"
    (tree / "real" / "sub").mkdir(parents=True)
    (tree / "real" / "file.txt").write_text("the file\n")
    (tree / "real" / "index.html").write_text("the index\n")
    (tree / "real" / "sub" / "deep.txt").write_text("deep\n")
    (tree / "dir").mkdir()
    (tree / "noindex").mkdir()
    os.symlink("real/file.txt", tree / "link-file")
    os.symlink("real", tree / "linkdir")
    os.symlink("noindex", tree / "linknoindex")
    os.symlink("../real/file.txt", tree / "dir" / "link-in-dir")
    os.symlink("real/file.txt", tree / "same-owner")
    (tree / "theirs.txt").write_text("someone else's\n")
    os.chown(tree / "theirs.txt", 4321, 4321)
    os.symlink("theirs.txt", tree / "other-owner")
    os.symlink("nowhere", tree / "dangling")
    (root / "tf").mkdir()
    (root / "tf" / "real.txt").write_text("tf real\n")
    os.symlink("real.txt", root / "tf" / "link.txt")
    (root / "fallback.txt").write_text("fallback\n")
    (root / "fromvar").mkdir()
    (root / "fromvar" / "real.txt").write_text("fromvar\n")
    os.symlink("real.txt", root / "fromvar" / "link.txt")


def fetch(port, target):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    location = next((line.split(": ", 1)[1] for line in lines if line.lower().startswith(
        "location:")), None)
    if location is not None:
        location = location.replace(f":{port}/", ":PORT/")
    return int(lines[0].split()[1]), location, body.split(b"<hr><center>")[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="if_not_owner needs a file of another owner")
def test_disable_symlinks_matches_nginx(start_gateway, start_nginx, tmp_path):
    root = tmp_path / "site"
    make_tree(root)
    targets = [f"/{prefix}/{path}" for prefix in ("off", "on", "owner", "from", "fromroot",
                                                  "listed") for path in PATHS]
    targets += ["/tf/real.txt", "/tf/link.txt", "/tf/none.txt",
                "/fromvar/real.txt", "/fromvar/link.txt"]
    answers = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port = free_port()
        start(CONFIG.format(port=port, root=root), port)
        answers[name] = [fetch(port, target) for target in targets]
    for target, got, want in zip(targets, answers["gateway"], answers["nginx"]):
        assert got == want, target
    status = dict(zip(targets, (answer[0] for answer in answers["nginx"])))
    # What the directive is for: links refused where "on" is set, followed where "off" is.
    assert status["/off/link-file"] == 200 and status["/on/link-file"] == 403
    assert status["/on/linkdir/file.txt"] == 404 and status["/from/linkdir/file.txt"] == 200
    assert status["/owner/same-owner"] == 200 and status["/owner/other-owner"] == 403

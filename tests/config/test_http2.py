"""HTTP/2 directives: sockets that speak it, inherited settings, nginx's own refusals and warnings."""

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.config.nginx_check import nginx_refusal

pytestmark = pytest.mark.nginx


def write(tmp_path, http):
    conf = tmp_path / "h.conf"
    conf.write_text(f"pid {tmp_path}/n.pid;\nerror_log {tmp_path}/e.log;\nevents {{}}\n"
                    f"http {{\n{http}\n}}\n")
    return conf


def load(tmp_path, http):
    return load_config(str(write(tmp_path, http)), str(tmp_path))


def test_http2_on_a_listen_makes_the_socket_speak_it_for_every_server_there(tmp_path):
    config = load(tmp_path, """
        http2_max_concurrent_streams 64;
        server { listen 127.0.0.1:8091 http2; server_name a; }
        server { listen 127.0.0.1:8091; server_name b; http2_max_concurrent_streams 8; }
        server { listen 127.0.0.1:8092; }
        server { listen 127.0.0.1:8093; http2 on; }""")
    assert config.http.http2_listens == {("127.0.0.1", 8091), ("127.0.0.1", 8093)}
    a, b, _, d = config.http.servers
    assert (a.http2_max_concurrent_streams, b.http2_max_concurrent_streams) == (64, 8)
    assert d.http2 and not a.http2
    assert not config.warnings


def test_obsolete_directives_warn_in_nginx_words(tmp_path):
    config = load(tmp_path, """
        http2_max_field_size 4k;
        http2_max_header_size 16k;
        http2_idle_timeout 3m;
        http2_max_requests 10;
        http2_recv_timeout 30s;
        http2_chunk_size 8k;
        server { listen 127.0.0.1:8091 http2; }""")
    conf = tmp_path / "h.conf"
    assert sorted(config.warnings) == sorted([
        f'"http2_chunk_size" directive is accepted but not acted on in {conf}:11',
        f'the "http2_max_field_size" directive is obsolete, use the "large_client_header_buffers" directive instead in {conf}:6',
        f'the "http2_max_header_size" directive is obsolete, use the "large_client_header_buffers" directive instead in {conf}:7',
        f'the "http2_idle_timeout" directive is obsolete, use the "keepalive_timeout" directive instead in {conf}:8',
        f'the "http2_max_requests" directive is obsolete, use the "keepalive_requests" directive instead in {conf}:9',
        f'the "http2_recv_timeout" directive is obsolete, use the "client_header_timeout" directive instead in {conf}:10',
    ])


@pytest.mark.parametrize("http", [
    "server { listen 127.0.0.1:8091 http2; http2_max_concurrent_streams x; }",
    "server { listen 127.0.0.1:8091 http2; location / { http2_max_concurrent_streams 3; } }",
    "http2_max_concurrent_streams 1 2; server { listen 127.0.0.1:8091; }",
    "server { listen 127.0.0.1:8091 http2=on; }",
    "http2_recv_buffer_size 1k; server { listen 127.0.0.1:8091; http2_recv_buffer_size 2k; }",
])
def test_refused_as_nginx_refuses(tmp_path, http):
    conf = write(tmp_path, http)
    code, message = nginx_refusal(tmp_path, conf)
    assert code == 1 and message, "nginx must refuse it too"
    with pytest.raises(ConfigError) as caught:
        load_config(str(conf), str(tmp_path))
    assert str(caught.value) == message

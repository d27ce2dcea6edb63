"""`listen ... proxy_protocol` and `real_ip_header proxy_protocol` in the config."""


def test_proxy_protocol_is_per_socket_as_in_nginx(conf):
    # One listen with the parameter makes the socket a PROXY one for every server on it (nginx ORs
    # it over the listens of one address, as it does "ssl").
    config = conf.load("http {\n server { listen 127.0.0.1:8080 proxy_protocol; }\n"
                       " server { listen 127.0.0.1:8080; server_name b; }\n"
                       " server { listen 127.0.0.1:8081; }\n}\n")
    flags = [listen.proxy_protocol for server in config.http.servers for listen in server.listens]
    assert flags == [True, True, False]


def test_real_ip_header_proxy_protocol_is_accepted(conf):
    config = conf.load("http {\n server { listen 127.0.0.1:8080 proxy_protocol;\n"
                       "  set_real_ip_from 10.0.0.0/8; real_ip_header proxy_protocol; }\n}\n")
    assert config.http.servers[0].settings.real_ip_header == "proxy_protocol"


def test_ssl_with_proxy_protocol_is_refused_with_file_and_line(conf):
    text = conf.error("http {\n server {\n  listen 127.0.0.1:8443 ssl proxy_protocol;\n"
                      "  ssl_certificate a.pem; ssl_certificate_key a.key;\n }\n}\n")
    assert text.startswith('"listen ... ssl proxy_protocol" is not supported by this gateway')
    assert text.endswith("main.conf:6")

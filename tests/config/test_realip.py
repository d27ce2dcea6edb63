"""set_real_ip_from, real_ip_header, real_ip_recursive: inheritance and nginx's refusals."""

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError


def load(tmp_path, server):
    conf = tmp_path / "r.conf"
    conf.write_text("events {}\nhttp {\n  server {\n    listen 127.0.0.1:8099;\n" + server + "\n  }\n}\n")
    return load_config(str(conf), str(tmp_path))


def test_settings_are_inherited_and_a_list_replaced_by_a_level_that_has_its_own(tmp_path):
    config = load(tmp_path, """
        set_real_ip_from 10.0.0.0/8; set_real_ip_from 2001:db8::/32; real_ip_header X-Forwarded-For;
        location /a/ { real_ip_recursive on; }
        location /b/ { set_real_ip_from 192.0.2.1; }""")
    (server,) = config.http.servers
    a, b = server.locations
    assert (a.settings.set_real_ip_from, a.settings.real_ip_header, a.settings.real_ip_recursive) == \
        (["10.0.0.0/8", "2001:db8::/32"], "X-Forwarded-For", True)
    assert (b.settings.set_real_ip_from, b.settings.real_ip_recursive) == (["192.0.2.1"], False)


@pytest.mark.parametrize("line, message", [
    ("set_real_ip_from 10.0.0.0/33;", 'host not found in set_real_ip_from "10.0.0.0/33"'),
    ("set_real_ip_from nowhere.invalid;", 'host not found in set_real_ip_from "nowhere.invalid"'),
    ("real_ip_recursive maybe;", 'invalid value "maybe" in "real_ip_recursive" directive, it must be "on" or "off"'),
])
def test_bad_values_are_refused_with_the_place(tmp_path, line, message):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, line)
    assert str(caught.value).startswith(message) and str(caught.value).endswith(f"{tmp_path}/r.conf:5")

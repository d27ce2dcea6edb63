"""Unikernel pool settings are checked at load, with file:line, like every directive."""

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError


def load(tmp_path, setting):
    conf = tmp_path / "u.conf"
    conf.write_text("events {}\nhttp {\n  unikernel e {\n    image echo;\n"
                    f"    setting {setting};\n  }}\n}}\n")
    return load_config(str(conf), str(tmp_path))


def test_host_side_tunable_with_a_bad_value_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "hang_timeout abc")
    assert str(caught.value) == (f'invalid value "abc" in unikernel setting "hang_timeout" '
                                 f'in {tmp_path}/u.conf:5')


def test_guest_setting_with_a_space_is_refused(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, 'key "a b"')
    assert 'invalid value "a b" in "setting" directive' in str(caught.value)


def test_valid_settings_are_kept(tmp_path):
    config = load(tmp_path, "hang_timeout 2s")
    assert config.http.unikernels["e"].settings == {"hang_timeout": "2s"}

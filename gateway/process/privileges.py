"""The ``user`` directive: resolve the account, and drop a worker's root privileges to it."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from gateway.config.model import Config
from gateway.errors import ConfigError, GatewayError
from gateway.observe.errorlog import format_os_error


@dataclass
class Account:
    """A resolved ``user NAME [GROUP]``."""

    name: str
    uid: int
    gid: int


def resolve(config: Config) -> Account | None:
    """The account workers switch to; None when not root or without ``user``."""
    if config.user is None or os.geteuid() != 0:
        return None
    name, group = config.user
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f'getpwnam("{name}") failed', config.file) from None
    gid = entry.pw_gid
    if group is not None:
        # Unlike nginx, an omitted group means the user's primary group (Debian has
        # no "nobody" group, so nginx's "group named like the user" rule fails there).
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f'getgrnam("{group}") failed', config.file) from None
    return Account(name, entry.pw_uid, gid)


def drop(account: Account) -> None:
    """Switch this process to ``account``: gid and groups first, uid last (then no way back)."""
    try:
        os.setgid(account.gid)
        os.initgroups(account.name, account.gid)
        os.setuid(account.uid)
    except OSError as exc:
        raise GatewayError(format_os_error("setuid", None, exc)
                           + f' while switching to user "{account.name}"') from exc

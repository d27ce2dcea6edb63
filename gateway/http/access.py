"""nginx's access module at request time: allow and deny rules, the first that matches decides.

The client address is the one realip left. Rules for IPv4 networks also judge IPv4-mapped IPv6
clients when the level has any IPv4 rule (ngx_http_access_handler); "all" is in both families.
"""

from __future__ import annotations

import ipaddress

ALLOW, DENY, DECLINED = "allow", "deny", None


class AccessRules:
    """One level's allow/deny rules by family: lists of (network or None for all, deny)."""

    __slots__ = ("v4", "v6")

    def __init__(self, rules):
        self.v4 = [(net, deny) for net, deny in rules
                   if net is None or (net != "unix:" and net.version == 4)]
        self.v6 = [(net, deny) for net, deny in rules
                   if net is None or (net != "unix:" and net.version == 6)]

    def check(self, request):
        """ALLOW, DENY or DECLINED (no rule matches)."""
        try:
            addr = ipaddress.ip_address(request.remote_addr)
        except ValueError:
            return DECLINED
        if addr.version == 6:
            if addr.ipv4_mapped is not None and self.v4:
                rules, addr = self.v4, addr.ipv4_mapped
            else:
                rules = self.v6
        else:
            rules = self.v4
        for net, deny in rules:
            if net is None or addr in net:
                return DENY if deny else ALLOW
        return DECLINED

"""nginx's ``limit_except`` at request time: a location whose block applies to other methods.

nginx switches a request to the block's nameless location in its find-config phase
(ngx_http_update_location_config) when the method is not one the block lists; everything after
(the rewrite, preaccess, access and content phases, the log phase) then uses that location.
Locations without the block never meet this module.
"""

from __future__ import annotations


class LimitExceptPlan:
    """A location's plan (``plan``) for the methods it spares, the block's (``limited``) for
    the others."""

    __slots__ = ("location", "settings", "kind", "spared", "plan", "limited", "add_headers",
                 "access_logs", "records_upstream", "meter", "proxy", "unikernel", "return_code",
                 "return_text", "real_ip", "post_read_real_ip")

    def __init__(self, plan, limited, spared: frozenset):
        self.location = plan.location
        self.settings = plan.settings
        self.kind = "limit_except"
        self.spared = spared
        self.plan = plan
        self.limited = limited
        self.add_headers = plan.add_headers
        self.access_logs = plan.access_logs
        self.records_upstream = getattr(plan, "records_upstream", False) or \
            getattr(limited, "records_upstream", False)
        self.meter = getattr(plan, "meter", None)
        self.proxy = self.unikernel = self.return_text = None
        self.return_code = 0
        # realip's preaccess step runs once the plan is chosen: a `return` of the location
        # answers before it, the block (which never inherits `return`) reaches it.
        self.real_ip = None
        self.post_read_real_ip = getattr(plan, "post_read_real_ip", None)

    def select(self, method: str):
        """The plan for a request with ``method`` (nginx: r->method & clcf->limit_except)."""
        return self.plan if method in self.spared else self.limited

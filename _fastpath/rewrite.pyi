"""Type stub for the compiled twin of gateway/http/rewrite.py (Program)."""

from gateway.http import rewrite

class Program:
    spec: rewrite.Program
    rewrite_log: bool
    def __init__(self, spec: rewrite.Program) -> None: ...
    def run(self, request) -> tuple[int, object, object]: ...

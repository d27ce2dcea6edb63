"""Type stub for the compiled twin of templates (variables.py), captures and maps (maps.py)."""

import re

from gateway.http import maps, variables

class Template:
    spec: variables.Template
    def __init__(self, spec: variables.Template) -> None: ...
    def render_py(self, request) -> str: ...

class MapVariable:
    spec: maps.MapVariable
    volatile: bool
    always_found: bool
    def __init__(self, spec: maps.MapVariable) -> None: ...
    def __call__(self, request) -> str: ...

class Searcher:
    def __init__(self, regex: re.Pattern) -> None: ...

def anchored_prefix(regex: re.Pattern) -> str | None: ...

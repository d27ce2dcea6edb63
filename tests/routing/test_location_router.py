"""LocationRouter: nginx's location search on both implementations."""

import random
import re

from gateway.config.model import Location, LocationSettings, ProxyPass, UnikernelPass


def loc(modifier, pattern, *children, regex=None):
    return Location(modifier, pattern, LocationSettings(), list(children), regex=regex)


def passed(modifier, pattern, *children):
    """A location whose content is proxied, so nginx auto-redirects to its name."""
    settings = LocationSettings(proxy_pass=ProxyPass("http://127.0.0.1:9", "127.0.0.1:9", None,
                                                     "127.0.0.1:9"))
    return Location(modifier, pattern, settings, list(children))


def test_exact_beats_everything(router):
    exact = loc("=", "/a.php")
    locations = [loc("", "/"), loc("~", r"\.php$"), loc("^~", "/a"), exact]
    assert router.LocationRouter(locations).match("/a.php") is exact


def test_longest_prefix_without_regex(router):
    root, a, ab = loc("", "/"), loc("", "/a"), loc("", "/a/b")
    match = router.LocationRouter([ab, root, a]).match
    assert match("/a/b/c") is ab
    assert match("/a/x") is a
    assert match("/ab") is a
    assert match("/z") is root


def test_regex_beats_prefix_first_in_config_order(router):
    root, php, img = loc("", "/"), loc("~", r"\.php$"), loc("~", r"^/a")
    match = router.LocationRouter([root, php, img]).match
    assert match("/a/x.php") is php
    assert match("/a/x") is img
    assert match("/b") is root


def test_caret_tilde_skips_regexes(router):
    static, php = loc("^~", "/static/"), loc("~", r"\.php$")
    match = router.LocationRouter([loc("", "/"), static, php]).match
    assert match("/static/x.php") is static
    assert match("/other/x.php") is php


def test_exact_also_skips_regexes_but_only_on_equality(router):
    exact, prefix, regex = loc("=", "/x"), loc("", "/x"), loc("~", "x")
    match = router.LocationRouter([exact, prefix, regex]).match
    assert match("/x") is exact
    assert match("/xy") is regex


def test_case(router):
    sensitive, caseless = loc("~", r"\.JPG$"), loc("~*", r"\.png$")
    match = router.LocationRouter([sensitive, caseless]).match
    assert match("/a.JPG") is sensitive
    assert match("/a.jpg") is None
    assert match("/A.PNG") is caseless
    # Prefix locations compare bytes exactly, as on Linux.
    assert router.LocationRouter([loc("", "/Docs")]).match("/docs") is None


def test_no_match(router):
    assert router.LocationRouter([loc("", "/api/")]).match("/") is None
    assert router.LocationRouter([]).match("/") is None


def test_nested_prefix_then_nested_regex_then_outer_regex(router):
    inner_prefix = loc("", "/a/b")
    inner_regex = loc("~", r"\.txt$")
    outer = loc("", "/a", inner_prefix, inner_regex)
    outer_regex = loc("~", r"\.(txt|gif)$")
    match = router.LocationRouter([loc("", "/"), outer, outer_regex]).match
    assert match("/a/b/c") is inner_prefix
    assert match("/a/b/c.txt") is inner_regex           # nested regexes come first
    assert match("/a/c.gif") is outer_regex
    assert match("/a/b/c.gif") is outer_regex
    assert match("/a/c") is outer


def test_nested_exact(router):
    exact = loc("=", "/a/exact")
    outer = loc("", "/a", exact)
    match = router.LocationRouter([outer, loc("~", "exact")]).match
    assert match("/a/exact") is exact
    assert match("/a/exact2") is not exact


def test_caret_tilde_parent_still_searches_its_nested_regexes(router):
    nested = loc("~", r"\.php$")
    static = loc("^~", "/s/", nested)
    match = router.LocationRouter([static, loc("~", r"\.(php|js)$")]).match
    assert match("/s/a.php") is nested
    assert match("/s/a.js") is static


def test_nested_caret_tilde_only_blocks_its_own_level(router):
    # nginx keeps a noregex flag per recursion level: a nested "^~" stops the
    # regexes of its parent block, not those of the server level.
    deep = loc("^~", "/a/b")
    block_regex = loc("~", "x")
    outer = loc("", "/a", deep, block_regex)
    top_regex = loc("~", "y")
    match = router.LocationRouter([outer, top_regex]).match
    assert match("/a/b/x") is deep
    assert match("/a/b/y") is top_regex


def test_regex_with_nested_locations(router):
    nested = loc("~", r"/admin/")
    php = loc("~", r"\.php$", nested)
    match = router.LocationRouter([loc("", "/"), php]).match
    assert match("/admin/x.php") is nested
    assert match("/x.php") is php


def test_named(router):
    fallback = loc("@", "@fallback")
    routes = router.LocationRouter([loc("", "/"), fallback])
    assert routes.named("fallback") is fallback
    assert routes.named("@fallback") is fallback
    assert routes.named("other") is None
    assert routes.match("@fallback") is not fallback


def test_uses_the_compiled_regex_and_pcre_named_groups(router):
    given = loc("~", "ignored", regex=re.compile(r"^/given"))
    named = loc("~", r"^/u/(?<user>\w+)$")
    match = router.LocationRouter([given, named]).match
    assert match("/given/x") is given
    assert match("/u/bob") is named


def test_auto_redirect(router):
    root, api = loc("", "/"), passed("", "/api/")
    unikernel = Location("", "/kv/", LocationSettings(unikernel_pass=UnikernelPass("kv")))
    routes = router.LocationRouter([root, api, unikernel, loc("~", "^/api$"), loc("", "/static/")])
    assert routes.find("/api") == (api, True)          # even though a regex matches
    assert routes.find("/kv") == (unikernel, True)
    assert routes.find("/api/") == (api, False)
    assert routes.find("/apix") == (routes.match("/apix"), False)
    assert routes.find("/static") == (root, False)      # not passed on: no redirect
    assert routes.match("/api") is not api              # match() leaves redirects aside


def test_auto_redirect_not_when_the_name_exists(router):
    api, exact = passed("", "/api/"), loc("=", "/api")
    assert router.LocationRouter([api, exact]).find("/api") == (exact, False)
    short = loc("", "/api")
    assert router.LocationRouter([api, short]).find("/api") == (short, False)


def test_auto_redirect_nested_and_under_regex(router):
    inner = passed("", "/a/b/")
    outer = loc("", "/a/", inner)
    routes = router.LocationRouter([outer])
    assert routes.find("/a/b") == (inner, True)
    # Below a regex location nginx takes the location without redirecting.
    regex_inner = passed("", "/x/")
    routes = router.LocationRouter([loc("~", "^/x", regex_inner)])
    assert routes.find("/x") == (regex_inner, False)


def test_implementations_agree_on_random_trees(both_routers):
    py, cy = both_routers
    rng = random.Random(3)
    words = ["a", "b", "ab", "x", "php"]

    def tree(depth, parent):
        items = []
        for _ in range(rng.randint(0, 4)):
            kind = rng.choice(["", "", "^~", "=", "~", "~*"])
            if kind in ("~", "~*"):
                pattern = rng.choice([r"\.php$", "^/a", "B", "x/", "a.?b"])
                items.append(loc(kind, pattern))
            else:
                pattern = parent + "/".join(rng.choice(words) for _ in range(rng.randint(0, 2)))
                pattern += rng.choice(["", "/"])
                children = tree(depth + 1, pattern) if kind != "=" and depth < 2 else []
                make = rng.choice((loc, passed))
                items.append(make(kind, pattern or "/", *children))
        return items

    for _ in range(300):
        locations = tree(0, "/")
        routers = py.LocationRouter(locations), cy.LocationRouter(locations)
        for _ in range(20):
            uri = "/" + "/".join(rng.choice(words + ["B.PHP", ""]) for _ in range(rng.randint(0, 4)))
            assert routers[0].match(uri) is routers[1].match(uri), uri
            found = routers[0].find(uri), routers[1].find(uri)
            assert found[0][0] is found[1][0] and found[0][1] == found[1][1], uri

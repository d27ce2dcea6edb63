"""The directive table: where each directive may appear and how many arguments it takes."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import limit_except
from gateway.errors import ConfigError

MAIN, EVENTS, HTTP, SERVER, LOCATION = "main", "events", "http", "server", "location"
UPSTREAM, UNIKERNEL, TYPES, IF = "upstream", "unikernel", "types", "if"
MAP, SPLIT_CLIENTS, GEO = "map", "split_clients", "geo"
LIMIT_EXCEPT = "limit_except"
# Blocks that hold "key value" lines rather than directives.
FREE_FORM = frozenset({TYPES, MAP, SPLIT_CLIENTS, GEO})

_HSL = (HTTP, SERVER, LOCATION)
_HS = (HTTP, SERVER)
_SL = (SERVER, LOCATION)
_ANY = None                  # no upper bound on the argument count


@dataclass(frozen=True)
class Spec:
    """How one directive is written in one set of contexts."""

    contexts: tuple[str, ...]
    min_args: int = 1
    max_args: int | None = 1
    block: str | None = None      # the context its block opens, None for a simple directive
    flag: bool = False            # takes exactly "on" or "off"
    unique: bool = True           # nginx says "is duplicate" on a second occurrence
    ignored: bool = False         # accepted but not acted on: a warning is recorded


def _s(contexts, lo=1, hi=1, **kw) -> Spec:
    return Spec(tuple(contexts), lo, hi, **kw)


def _flag(contexts, **kw) -> Spec:
    return Spec(tuple(contexts), 1, 1, flag=True, **kw)


def _ignored(contexts, lo=1, hi=_ANY, flag=False) -> Spec:
    if flag:
        lo = hi = 1
    return Spec(tuple(contexts), lo, hi, flag=flag, unique=False, ignored=True)


TABLE: dict[str, list[Spec]] = {
    # main
    "user": [_s([MAIN], 1, 2)],
    "worker_processes": [_s([MAIN])],
    "pid": [_s([MAIN])],
    "daemon": [_flag([MAIN])],
    "master_process": [_flag([MAIN])],
    "worker_rlimit_nofile": [_s([MAIN])],
    "worker_shutdown_timeout": [_s([MAIN])],
    "error_log": [_s([MAIN, *_HSL], 1, _ANY, unique=False)],
    "events": [_s([MAIN], 0, 0, block=EVENTS)],
    "http": [_s([MAIN], 0, 0, block=HTTP)],
    "include": [_s([MAIN, EVENTS, *_HSL, UPSTREAM, UNIKERNEL, TYPES, IF, MAP, GEO, LIMIT_EXCEPT],
                   unique=False)],
    # events
    "worker_connections": [_s([EVENTS])],
    # http
    "server": [_s([HTTP], 0, 0, block=SERVER, unique=False),
               _s([UPSTREAM], 1, _ANY, unique=False)],
    "upstream": [_s([HTTP], block=UPSTREAM, unique=False)],
    "unikernel": [_s([HTTP], block=UNIKERNEL, unique=False)],
    "log_format": [_s([HTTP], 2, _ANY, unique=False)],
    "map": [_s([HTTP], 2, 2, block=MAP, unique=False)],
    "split_clients": [_s([HTTP], 2, 2, block=SPLIT_CLIENTS, unique=False)],
    "geo": [_s([HTTP], 1, 2, block=GEO, unique=False)],
    "types": [_s(_HSL, 0, 0, block=TYPES, unique=False)],
    "default_type": [_s(_HSL)],
    # server
    "listen": [_s([SERVER], 1, _ANY, unique=False)],
    "server_name": [_s([SERVER], 1, _ANY, unique=False)],
    "location": [_s([SERVER, LOCATION], 1, 2, block=LOCATION, unique=False)],
    # nginx's NGX_HTTP_LMT_CONF directives are the ones that list LIMIT_EXCEPT (limit_except.py)
    "limit_except": [_s([LOCATION], 1, _ANY, block=LIMIT_EXCEPT)],
    "client_header_timeout": [_s(_HS)],
    "client_header_buffer_size": [_s(_HS)],
    "large_client_header_buffers": [_s(_HS, 2, 2)],
    "underscores_in_headers": [_flag(_HS)],      # request field names (http/header_names.py)
    "ignore_invalid_headers": [_flag(_HS)],
    # http, server, location
    "root": [_s([*_HSL, IF])],
    "alias": [_s([LOCATION])],
    "index": [_s(_HSL, 1, _ANY, unique=False)],
    "try_files": [_s([SERVER, LOCATION], 2, _ANY)],
    "return": [_s([SERVER, LOCATION, IF], 1, 2, unique=False)],
    # rewrite module (issue 11)
    "rewrite": [_s([SERVER, LOCATION, IF], 2, 3, unique=False)],
    "set": [_s([SERVER, LOCATION, IF], 2, 2, unique=False)],
    "break": [_s([SERVER, LOCATION, IF], 0, 0, unique=False)],
    "if": [_s([SERVER, LOCATION], 1, _ANY, block=IF, unique=False)],
    "rewrite_log": [_flag([*_HSL, IF])],
    "uninitialized_variable_warn": [_flag([*_HSL, IF])],
    "error_page": [_s([*_HSL, IF], 2, _ANY, unique=False)],
    "recursive_error_pages": [_flag(_HSL)],
    "internal": [_s([LOCATION], 0, 0)],
    "add_header": [_s([*_HSL, IF], 2, 3, unique=False)],
    "expires": [_s([*_HSL, IF], 1, 2)],          # ngx_http_headers_module (config/headers.py)
    "add_trailer": [_s([*_HSL, IF], 2, 3, unique=False)],    # (config/limit_rate.py)
    "limit_rate": [_s([*_HSL, IF])],
    "limit_rate_after": [_s([*_HSL, IF])],
    "client_max_body_size": [_s(_HSL)],
    "client_body_timeout": [_s(_HSL)],
    "keepalive_timeout": [_s(_HSL, 1, 2), _s([UPSTREAM])],
    "keepalive_requests": [_s(_HSL), _s([UPSTREAM])],
    "access_log": [_s([*_HSL, IF, LIMIT_EXCEPT], 1, _ANY, unique=False)],
    "server_tokens": [_s(_HSL)],
    "etag": [_flag(_HSL)],
    "if_modified_since": [_s(_HSL)],
    "max_ranges": [_s(_HSL)],
    # autoindex and disable_symlinks (gateway/config/static_files.py)
    "msie_padding": [_flag(_HSL)],          # error pages for MSIE and Chrome (responses.py)
    "autoindex": [_flag(_HSL)],
    "random_index": [_flag([LOCATION])],        # (gateway/config/random_index.py)
    # ngx_http_secure_link_module (gateway/config/secure_link.py)
    "secure_link": [_s(_HSL)],
    "secure_link_md5": [_s(_HSL)],
    "secure_link_secret": [_s(_HSL)],
    # ngx_http_sub_module (gateway/config/sub_filter.py)
    "sub_filter": [_s(_HSL, 2, 2, unique=False)],
    "sub_filter_once": [_flag(_HSL)],
    "sub_filter_types": [_s(_HSL, 1, _ANY, unique=False)],
    "sub_filter_last_modified": [_flag(_HSL)],
    # ngx_http_referer_module (gateway/config/referer.py)
    "valid_referers": [_s(_SL, 1, _ANY, unique=False)],
    "referer_hash_max_size": [_s(_SL)],
    "referer_hash_bucket_size": [_s(_SL)],
    "autoindex_format": [_s(_HSL)],
    "autoindex_exact_size": [_flag(_HSL)],
    "autoindex_localtime": [_flag(_HSL)],
    "disable_symlinks": [_s(_HSL, 1, 2)],
    # proxy
    "proxy_pass": [_s([LOCATION, IF, LIMIT_EXCEPT])],
    "resolver": [_s(_HSL, 1, _ANY)],
    "resolver_timeout": [_s(_HSL)],
    "proxy_set_header": [_s(_HSL, 2, 2, unique=False)],
    "proxy_http_version": [_s(_HSL)],
    "proxy_connect_timeout": [_s(_HSL)],
    "proxy_read_timeout": [_s(_HSL)],
    "proxy_send_timeout": [_s(_HSL)],
    "proxy_buffering": [_flag(_HSL)],
    "proxy_request_buffering": [_flag(_HSL)],
    "proxy_next_upstream": [_s(_HSL, 1, _ANY)],
    "proxy_next_upstream_tries": [_s(_HSL)],
    "proxy_next_upstream_timeout": [_s(_HSL)],
    "proxy_request_timeout": [_s(_HSL)],       # ours: a deadline for the whole exchange
    "proxy_pass_request_body": [_flag(_HSL)],
    # proxy header directives (gateway/config/proxy_headers.py)
    "proxy_hide_header": [_s(_HSL, unique=False)],
    "proxy_pass_header": [_s(_HSL, unique=False)],
    "proxy_ignore_headers": [_s(_HSL, 1, _ANY, unique=False)],
    "proxy_redirect": [_s(_HSL, 1, 2, unique=False)],
    "proxy_cookie_domain": [_s(_HSL, 1, 2, unique=False)],
    "proxy_cookie_path": [_s(_HSL, 1, 2, unique=False)],
    "proxy_cookie_flags": [_s(_HSL, 1, 4, unique=False)],
    "proxy_method": [_s(_HSL)],
    "proxy_pass_request_headers": [_flag(_HSL)],
    "proxy_set_body": [_s(_HSL)],
    "proxy_intercept_errors": [_flag(_HSL)],
    # proxy cache (gateway/config/proxy_cache.py)
    "proxy_cache_path": [_s([HTTP], 2, _ANY, unique=False)],
    "proxy_cache": [_s(_HSL)],
    "proxy_cache_key": [_s(_HSL)],
    "proxy_cache_valid": [_s(_HSL, 1, _ANY, unique=False)],
    "proxy_cache_methods": [_s(_HSL, 1, _ANY, unique=False)],
    "proxy_cache_use_stale": [_s(_HSL, 1, _ANY, unique=False)],
    "proxy_cache_bypass": [_s(_HSL, 1, _ANY, unique=False)],
    "proxy_no_cache": [_s(_HSL, 1, _ANY, unique=False)],
    "proxy_cache_min_uses": [_s(_HSL)],
    "proxy_cache_lock": [_flag(_HSL)],
    "proxy_cache_lock_timeout": [_s(_HSL)],
    "proxy_cache_lock_age": [_s(_HSL)],
    "proxy_cache_revalidate": [_flag(_HSL)],
    "proxy_cache_convert_head": [_flag(_HSL)],
    "proxy_cache_background_update": [_flag(_HSL)],
    "proxy_cache_max_range_offset": [_s(_HSL)],
    # upstream
    "keepalive": [_s([UPSTREAM])],
    "least_conn": [_s([UPSTREAM], 0, 0, unique=False)],
    "ip_hash": [_s([UPSTREAM], 0, 0, unique=False)],
    "hash": [_s([UPSTREAM], 1, 2, unique=False)],
    "random": [_s([UPSTREAM], 0, 2, unique=False)],
    "least_time": [_s([UPSTREAM], 1, 2, unique=False)],
    "health_check": [_s([UPSTREAM], 0, _ANY)],
    # unikernel pools
    "image": [_s([UNIKERNEL])],
    "instances": [_s([UNIKERNEL], 1, 2)],
    "spares": [_s([UNIKERNEL])],
    "prestart": [_s([UNIKERNEL])],
    "memory": [_s([UNIKERNEL])],
    "transport": [_s([UNIKERNEL])],
    "accel": [_s([UNIKERNEL])],
    "balance": [_s([UNIKERNEL], 1, 3)],
    "setting": [_s([UNIKERNEL], 2, 2, unique=False)],
    "unikernel_pass": [_s([LOCATION], 1, 2)],
    "stub_status": [_s([SERVER, LOCATION], 0, 1)],
    "metrics": [_s([SERVER, LOCATION], 0, 0)],
    "status_json": [_s([SERVER, LOCATION], 0, 0)],
    "status_page": [_s([SERVER, LOCATION], 0, 1)],
    "set_real_ip_from": [_s(_HSL, unique=False)],
    "real_ip_header": [_s(_HSL)],
    "real_ip_recursive": [_flag(_HSL)],
    "unikernel_auth": [_s(_HSL, 1, _ANY)],
    "unikernel_cache": [_s(_HSL, 1, _ANY)],
    "unikernel_body": [_s(_HSL, 1, _ANY)],
    # limit_req, limit_conn (gateway/config/limits.py), access phase (gateway/config/access.py)
    "limit_req_zone": [_s([HTTP], 3, 3, unique=False)],
    "limit_req": [_s(_HSL, 1, 3, unique=False)],
    "limit_req_status": [_s(_HSL)],
    "limit_req_log_level": [_s(_HSL)],
    "limit_req_dry_run": [_flag(_HSL)],
    "limit_conn_zone": [_s([HTTP], 2, 2, unique=False)],
    "limit_conn": [_s(_HSL, 2, 2, unique=False)],
    "limit_conn_status": [_s(_HSL)],
    "limit_conn_log_level": [_s(_HSL)],
    "limit_conn_dry_run": [_flag(_HSL)],
    "allow": [_s([*_HSL, LIMIT_EXCEPT], unique=False)],
    "deny": [_s([*_HSL, LIMIT_EXCEPT], unique=False)],
    "auth_basic": [_s([*_HSL, LIMIT_EXCEPT])],
    "auth_basic_user_file": [_s([*_HSL, LIMIT_EXCEPT])],
    "satisfy": [_s(_HSL)],
    "auth_request": [_s(_HSL)],
    "auth_request_set": [_s(_HSL, 2, 2, unique=False)],
    # ngx_http_mirror_module (gateway/config/mirror.py)
    "mirror": [_s(_HSL, unique=False)],
    "mirror_request_body": [_flag(_HSL)],
    # TLS termination (gateway/http/tls.py)
    "ssl_certificate": [_s(_HS, unique=False)],
    "ssl_certificate_key": [_s(_HS, unique=False)],
    "ssl_protocols": [_s(_HS, 1, _ANY, unique=False)],   # repeated: the versions add up
    "ssl_ciphers": [_s(_HS)],
    "ssl_prefer_server_ciphers": [_flag(_HS)],
    "ssl_session_cache": [_s(_HS, 1, 2)],
    "ssl_session_timeout": [_s(_HS)],
    "ssl_session_tickets": [_flag(_HS)],
    "ssl_dhparam": [_s(_HS)],
    "ssl_ecdh_curve": [_s(_HS)],
    "ssl_verify_client": [_s(_HS)],
    "ssl_verify_depth": [_s(_HS)],
    "ssl_client_certificate": [_s(_HS)],
    "ssl_trusted_certificate": [_s(_HS)],
    "ssl_crl": [_s(_HS)],
    "proxy_ssl_verify": [_flag(_HSL)],
    "proxy_ssl_trusted_certificate": [_s(_HSL)],
    "proxy_ssl_server_name": [_flag(_HSL)],
    "proxy_ssl_name": [_s(_HSL)],
    "proxy_ssl_certificate": [_s(_HSL)],
    "proxy_ssl_certificate_key": [_s(_HSL)],
    "proxy_ssl_password_file": [_s(_HSL)],
    "proxy_ssl_ciphers": [_s(_HSL)],
    "proxy_ssl_protocols": [_s(_HSL, 1, _ANY, unique=False)],   # repeated: the versions add up
    "proxy_ssl_crl": [_s(_HSL)],
    "proxy_ssl_verify_depth": [_s(_HSL)],       # checked, then a warning (proxy_ssl.py)
    # HTTP/2 (gateway/config/http2.py): the obsolete ones get nginx's own warning there
    "http2": [_flag(_HS)],
    "http2_max_concurrent_streams": [_s(_HS)],
    **{n: [_s(_HS)] for n in ("http2_idle_timeout", "http2_max_requests", "http2_max_field_size",
                              "http2_max_header_size", "http2_recv_timeout")},
    # accepted but not acted on
    "load_module": [_ignored([MAIN], 1, 1)],
    "worker_cpu_affinity": [_ignored([MAIN])],
    "worker_priority": [_ignored([MAIN], 1, 1)],
    "pcre_jit": [_ignored([MAIN], flag=True)],
    "env": [_ignored([MAIN], 1, 1)],
    "timer_resolution": [_ignored([MAIN], 1, 1)],
    "multi_accept": [_ignored([EVENTS], flag=True)],
    "use": [_ignored([EVENTS], 1, 1)],
    "accept_mutex": [_ignored([EVENTS], flag=True)],
    "accept_mutex_delay": [_ignored([EVENTS], 1, 1)],
    "sendfile": [_ignored([*_HSL, IF], flag=True)],
    "sendfile_max_chunk": [_ignored(_HSL, 1, 1)],
    "tcp_nopush": [_ignored(_HSL, flag=True)],
    "tcp_nodelay": [_ignored(_HSL, flag=True)],
    "types_hash_max_size": [_ignored(_HSL, 1, 1)],
    "types_hash_bucket_size": [_ignored(_HSL, 1, 1)],
    "server_names_hash_bucket_size": [_ignored([HTTP], 1, 1)],
    "server_names_hash_max_size": [_ignored([HTTP], 1, 1)],
    "variables_hash_bucket_size": [_ignored([HTTP], 1, 1)],
    "variables_hash_max_size": [_ignored([HTTP], 1, 1)],
    "server_name_in_redirect": [_flag(_HSL)],
    "port_in_redirect": [_flag(_HSL)],
    "absolute_redirect": [_flag(_HSL)],
    "open_file_cache": [_ignored(_HSL, 1, 2)],
    "log_not_found": [_flag(_HSL)],
    "open_log_file_cache": [_ignored(_HSL)],
    "charset": [_ignored([*_HSL, IF], 1, 1)],
    "reset_timedout_connection": [_ignored(_HSL, flag=True)],
    "send_timeout": [_ignored(_HSL, 1, 1)],
    "client_body_buffer_size": [_ignored(_HSL, 1, 1)],
    "proxy_buffer_size": [_ignored(_HSL, 1, 1)],
    "proxy_buffers": [_ignored(_HSL, 2, 2)],
    "proxy_busy_buffers_size": [_ignored(_HSL, 1, 1)],
    "proxy_ignore_client_abort": [_ignored(_HSL, flag=True)],
    "proxy_limit_rate": [_ignored(_HSL, 1, 1)],     # the upstream read rate (buffered proxying)
    "zone": [_ignored([UPSTREAM], 1, 2)],
    "ssl_stapling": [_ignored(_HS, flag=True)],
    "ssl_stapling_verify": [_ignored(_HS, flag=True)],
    # gzip and gzip_static (gateway/config/gzip.py)
    "gzip": [_flag([*_HSL, IF])],
    "gzip_vary": [_flag(_HSL)],
    "gzip_proxied": [_s(_HSL, 1, _ANY, unique=False)],
    "gzip_comp_level": [_s(_HSL)],
    "gzip_http_version": [_s(_HSL)],
    "gzip_types": [_s(_HSL, 1, _ANY, unique=False)],
    "gzip_min_length": [_s(_HSL)],
    "gzip_disable": [_s(_HSL, 1, _ANY, unique=False)],
    "gzip_window": [_s(_HSL)],
    "gzip_hash": [_s(_HSL)],
    "gzip_static": [_s(_HSL)],
    "gzip_buffers": [_s(_HSL, 2, 2)],
    "gzip_no_buffer": [_flag(_HSL)],
    "postpone_gzipping": [_s(_HSL)],
    # nginx internals: buffers, temp files, hashes, pools, timers, workers (issue 11)
    "worker_rlimit_core": [_ignored([MAIN], 1, 1)],
    "working_directory": [_ignored([MAIN], 1, 1)],
    "lock_file": [_ignored([MAIN], 1, 1)],
    "thread_pool": [_ignored([MAIN], 2, 3)],
    "worker_aio_requests": [_ignored([EVENTS], 1, 1)],
    "debug_connection": [_ignored([EVENTS], 1, 1)],
    "client_body_temp_path": [_ignored(_HSL, 1, 4)],
    "proxy_temp_path": [_ignored(_HSL, 1, 4)],
    "fastcgi_temp_path": [_ignored(_HSL, 1, 4)],
    "uwsgi_temp_path": [_ignored(_HSL, 1, 4)],
    "scgi_temp_path": [_ignored(_HSL, 1, 4)],
    "connection_pool_size": [_ignored(_HS, 1, 1)],
    "request_pool_size": [_ignored(_HS, 1, 1)],
    "output_buffers": [_ignored(_HSL, 2, 2)],
    "postpone_output": [_ignored(_HSL, 1, 1)],
    "aio": [_ignored(_HSL, 1, 1)],
    "aio_write": [_ignored(_HSL, flag=True)],
    "directio": [_ignored(_HSL, 1, 1)],
    "directio_alignment": [_ignored(_HSL, 1, 1)],
    "read_ahead": [_ignored(_HSL, 1, 1)],
    "open_file_cache_valid": [_ignored(_HSL, 1, 1)],
    "open_file_cache_min_uses": [_ignored(_HSL, 1, 1)],
    "open_file_cache_errors": [_ignored(_HSL, flag=True)],
    "open_file_cache_events": [_ignored(_HSL, flag=True)],
    "proxy_max_temp_file_size": [_ignored(_HSL, 1, 1)],
    "proxy_temp_file_write_size": [_ignored(_HSL, 1, 1)],
    "proxy_socket_keepalive": [_ignored(_HSL, flag=True)],
    "client_body_in_file_only": [_ignored(_HSL, 1, 1)],
    "client_body_in_single_buffer": [_ignored(_HSL, flag=True)],
    "subrequest_output_buffer_size": [_ignored(_HSL, 1, 1)],
    "map_hash_max_size": [_ignored([HTTP], 1, 1)],
    "map_hash_bucket_size": [_ignored([HTTP], 1, 1)],
    "proxy_headers_hash_max_size": [_ignored(_HSL, 1, 1)],
    "proxy_headers_hash_bucket_size": [_ignored(_HSL, 1, 1)],
    "lingering_close": [_ignored(_HSL, 1, 1)],
    "lingering_time": [_ignored(_HSL, 1, 1)],
    "lingering_timeout": [_ignored(_HSL, 1, 1)],
    "send_lowat": [_ignored(_HSL, 1, 1)],
    "msie_refresh": [_ignored(_HSL, flag=True)],
    "log_subrequest": [_ignored(_HSL, flag=True)],
    # Accepted with a warning, not acted on (issue 11's sweep of nginx's documented examples):
    # the gateway keeps its one behaviour, nginx's default where it has one (README).
    "merge_slashes": [_ignored(_HS, flag=True)],
    "chunked_transfer_encoding": [_ignored(_HSL, flag=True)],
    "proxy_bind": [_ignored(_HSL, 1, 2)],
    # Side effects the gateway does not have: responses are proxied whole and unchanged, but
    # proxy_store writes no copy to disk and proxy_force_ranges slices nothing (the upstream
    # sees the client's Range and answers it, as without the directive).
    "proxy_store": [_ignored(_HSL, 1, 1)],
    "proxy_store_access": [_ignored(_HSL, 1, 3)],
    "proxy_force_ranges": [_ignored(_HSL, flag=True)],
    "proxy_ssl_conf_command": [_ignored(_HSL, 2, 2)],
    "proxy_ssl_session_reuse": [_ignored(_HSL, flag=True)],
    "keepalive_time": [_ignored(_HSL, 1, 1), _ignored([UPSTREAM], 1, 1)],
    "keepalive_disable": [_ignored(_HSL, 1, 2)],
    "http2_chunk_size": [_ignored(_HSL, 1, 1)],
    "http2_body_preread_size": [_ignored(_HS, 1, 1)],
    "http2_recv_buffer_size": [_ignored([HTTP], 1, 1)],
    "http2_streams_index_size": [_ignored(_HS, 1, 1)],
    "http2_push": [_ignored(_HSL, 1, 1)],                # server push: gone in nginx 1.25.1
    "http2_push_preload": [_ignored(_HSL, flag=True)],
    "http2_max_concurrent_pushes": [_ignored(_HS, 1, 1)],
}

# nginx directives we know but cannot honour: refused with a clear message.
UNSUPPORTED = {"ssl", "stream", "mail", "fastcgi_pass", "uwsgi_pass", "scgi_pass",
               "grpc_pass", "memcached_pass"}


def lookup(name: str, context: str, file: str, line: int) -> Spec:
    """The Spec of ``name`` in ``context``, or ConfigError in nginx's wording."""
    specs = TABLE.get(name)
    if specs is None:
        if name in UNSUPPORTED:
            raise ConfigError(f'"{name}" directive is not supported by this gateway', file, line)
        raise ConfigError(f'unknown directive "{name}"', file, line)
    for spec in specs:
        if context in spec.contexts:
            return spec
    raise ConfigError(f'"{name}" directive is not allowed here', file, line)


def check(name: str, args: list[str], has_block: bool, context: str,
          seen: set[str], file: str, line: int) -> Spec:
    """Validate one directive occurrence as nginx's ngx_conf_handler does."""
    spec = lookup(name, context, file, line)
    if spec.block and not has_block:
        raise ConfigError(f'directive "{name}" has no opening "{{"', file, line)
    if not spec.block and has_block:
        raise ConfigError(f'directive "{name}" is not terminated by ";"', file, line)
    if len(args) < spec.min_args or (spec.max_args is not None and len(args) > spec.max_args):
        raise ConfigError(f'invalid number of arguments in "{name}" directive', file, line)
    if spec.flag and args[0] not in ("on", "off"):
        raise ConfigError(f'invalid value "{args[0]}" in "{name}" directive, '
                          'it must be "on" or "off"', file, line)
    if spec.unique:
        if name in seen:
            raise ConfigError(f'"{name}" directive is duplicate', file, line)
        seen.add(name)
    if spec.block == LIMIT_EXCEPT:
        # nginx reads the methods before the block, so their error comes before any inside it.
        limit_except.methods(args, file, line)
    return spec

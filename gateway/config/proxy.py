"""Building ``proxy_pass`` (ngx_http_proxy_module): URLs, upstream TLS, implicit upstreams."""

from __future__ import annotations

from gateway.config import addresses, values
from gateway.config.model import Certificate, LocationSettings, ProxyPass, Upstream, UpstreamServer
from gateway.config.parser import Directive
from gateway.errors import ConfigError


def proxy_pass_uri(url: str) -> str | None:
    """The URI part of a proxy_pass URL ("/v1/"), None without one."""
    rest = url.split("://", 1)[-1]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=-1)
    return None if cut < 0 else rest[cut:]


class ProxyBuilder:
    """The Builder's part for proxy_pass (a mixin: resolved once every upstream is known)."""

    def _proxy_pass(self, d: Directive, no_uri_allowed: bool) -> ProxyPass:
        url, f, ln = d.args[0], d.file, d.line
        lower = url.lower()
        secure = lower.startswith("https://")
        if not lower.startswith("http://") and not secure:
            raise ConfigError("invalid URL prefix", f, ln)
        rest = url[len("https://" if secure else "http://"):]
        if "$" in url and secure:
            raise ConfigError('"https" with variables in proxy_pass is not supported by this '
                              'gateway', f, ln)
        if "$" in url:
            values.check_template(url, f, ln)
            authority = rest.split("/", 1)[0]
            uri = rest[len(authority):] or None
            return ProxyPass(url, "", uri, authority, has_variables=True)
        if rest.startswith("unix:"):
            raise ConfigError("proxy_pass to a unix socket is not supported by this gateway",
                              f, ln)
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=-1)
        authority, uri = (rest, None) if cut < 0 else (rest[:cut], rest[cut:])
        if uri is not None and no_uri_allowed:
            raise ConfigError('"proxy_pass" cannot have URI part in location given by regular '
                              'expression, or inside named location, or inside "if" statement, '
                              'or inside "limit_except" block', f, ln)
        host, port = addresses.split_host_port(authority)
        if host is None:
            raise ConfigError(f'invalid host in upstream "{authority}"', f, ln)
        if not host:
            raise ConfigError(f'no host in upstream "{authority}"', f, ln)
        if port is not None and addresses.valid_port(port) is None:
            raise ConfigError(f'invalid port in upstream "{authority}"', f, ln)
        pp = ProxyPass(url, "", uri, authority, ssl=secure)
        self.pending_proxy.append((pp, host, port, f, ln))
        return pp

    def _upstream_tls(self, settings: LocationSettings, d: Directive):
        """proxy_ssl_*: the client context (shared by equal settings) and how names are used."""
        from gateway.http import tls as tls_module
        s = settings
        trusted = s.proxy_ssl_trusted_certificate
        if s.proxy_ssl_certificate is not None and s.proxy_ssl_certificate_key is None:
            raise ConfigError('no "proxy_ssl_certificate_key" is defined for certificate '
                              f'"{s.proxy_ssl_certificate}"', d.file, d.line)
        if s.proxy_ssl_verify and trusted is None:
            raise ConfigError("no proxy_ssl_trusted_certificate for proxy_ssl_verify",
                              d.file, d.line)
        certificate = None
        if s.proxy_ssl_certificate is not None:
            # nginx names no place for a file it cannot load here: ours is the proxy_pass.
            certificate = Certificate(s.proxy_ssl_certificate, s.proxy_ssl_certificate_key,
                                      d.file, d.line, d.file, d.line)
        # The CRL is only read with proxy_ssl_verify on, as nginx reads it.
        key = (s.proxy_ssl_verify, trusted, s.proxy_ssl_protocols, s.proxy_ssl_ciphers,
               certificate and (certificate.cert, certificate.key), s.proxy_ssl_passwords,
               s.proxy_ssl_crl if s.proxy_ssl_verify else None)
        contexts = self.upstream_tls_contexts
        if key not in contexts:
            contexts[key] = tls_module.client_context(
                s.proxy_ssl_verify, trusted, d.file, d.line, protocols=s.proxy_ssl_protocols,
                ciphers=s.proxy_ssl_ciphers, certificate=certificate,
                passwords=s.proxy_ssl_passwords, crl=key[-1])
        return tls_module.UpstreamTls(contexts[key], s.proxy_ssl_name or "$proxy_host",
                                      s.proxy_ssl_server_name, s.proxy_ssl_verify)

    def _resolve_proxy_passes(self) -> None:
        upstreams = self.http.upstreams
        for pp, host, port, f, ln in self.pending_proxy:
            named = upstreams.get(host)
            if named is not None and not named.implicit:
                if port is not None:
                    raise ConfigError(f'upstream "{host}" may not have port {port}', f, ln)
                pp.upstream = host
                continue
            portnum = int(port) if port is not None else (443 if pp.ssl else 80)
            name = f"{host}:{portnum}"
            if name not in upstreams:
                addrs = addresses.resolve(host, portnum)
                if not addrs:
                    raise ConfigError(f'host not found in upstream "{host}"', f, ln)
                upstreams[name] = Upstream(
                    name, [UpstreamServer(name, a, portnum) for a in addrs],
                    implicit=True, file=f, line=ln)
            pp.upstream = name

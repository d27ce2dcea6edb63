"""The ``gateway`` command: nginx's flags and behaviour, so scripts written for nginx work."""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass

from gateway import __version__
from gateway.config.model import Config
from gateway.errors import GatewayError
from gateway.observe.errorlog import STDERR, log, stderr_line

USAGE = """\
Usage: gateway [-?hvVtTq] [-s signal] [-p prefix]
               [-e filename] [-c filename] [-g directives]

Options:
  -?,-h,--help  : print this help and exit
  -v,--version  : print the version and exit
  -V            : print the version and build information and exit
  -t            : check the configuration and exit
  -T            : check the configuration, print it to stdout and exit
  -q            : with -t/-T, print errors only
  -s signal     : signal the running master: stop, quit, reopen, reload
  -p prefix     : prefix for relative paths (default: the current directory)
  -e filename   : error log when the configuration sets none
                  (default: PREFIX/logs/error.log; "stderr" is allowed)
  -c filename   : configuration file, relative to the prefix
                  (default: the built-in gateway/default/gateway.conf)
  -g directives : main-context directives read before the file, e.g. "daemon off;"
"""

SIGNAL_NAMES = ("stop", "quit", "reopen", "reload")
DEFAULT_PID = "logs/gateway.pid"
DEFAULT_ERROR_LOG = "logs/error.log"


class UsageError(Exception):
    """A bad command line, reported as ``gateway: <message>``."""


@dataclass
class Options:
    """What the command line asked for."""

    help: bool = False
    version: int = 0              # 1 for -v, 2 for -V
    test: bool = False
    dump: bool = False
    quiet: bool = False
    signal: str | None = None
    prefix: str | None = None
    error_log: str | None = None
    conf: str | None = None
    globals_text: str | None = None


# Command line ---------------------------------------------------------------

_LONG_OPTIONS = {"--help": ("help", True), "--version": ("version", 1)}
_VALUE_OPTIONS = {"p": "directory name", "e": "file name", "c": "file name",
                  "g": "parameter", "s": "parameter"}


def parse_args(argv: list[str]) -> Options:
    """Parse nginx-style flags (``-tq`` groups, ``-cFILE`` or ``-c FILE``); raises UsageError."""
    options = Options()
    args = iter(argv)
    for arg in args:
        if arg in _LONG_OPTIONS:      # not nginx's, but what people type first
            setattr(options, *_LONG_OPTIONS[arg])
            continue
        if not arg.startswith("-") or arg == "-":
            raise UsageError(f'invalid option: "{arg}"')
        flags = arg[1:]
        while flags:
            flag, flags = flags[0], flags[1:]
            if flag in _VALUE_OPTIONS:
                value = flags or next(args, None)
                flags = ""
                if not value:
                    raise UsageError(f'option "-{flag}" requires {_VALUE_OPTIONS[flag]}')
                _set_value(options, flag, value)
            elif flag in "?h":
                options.help = True
            elif flag == "v":
                options.version = max(options.version, 1)
            elif flag == "V":
                options.version = 2
            elif flag == "t":
                options.test = True
            elif flag == "T":
                options.test = options.dump = True
            elif flag == "q":
                options.quiet = True
            else:
                raise UsageError(f'invalid option: "{flag}"')
    return options


def _set_value(options: Options, flag: str, value: str) -> None:
    if flag == "s":
        if value not in SIGNAL_NAMES:
            raise UsageError(f'invalid option: "-s {value}"')
        options.signal = value
    elif flag == "p":
        options.prefix = value
    elif flag == "e":
        options.error_log = value
    elif flag == "c":
        options.conf = value
    else:
        options.globals_text = value


# Paths ------------------------------------------------------------------------

def prefix_of(options: Options) -> str:
    """The absolute prefix: ``-p`` or the current directory."""
    return os.path.abspath(options.prefix or os.getcwd())


def conf_path(options: Options) -> str | None:
    """The absolute ``-c`` file (relative names are under the prefix, as nginx does), or None."""
    if options.conf is None:
        return None
    return os.path.join(prefix_of(options), options.conf)


def conf_display(options: Options) -> str:
    """The configuration file named in ``-t`` messages."""
    path = conf_path(options)
    if path is not None:
        return path
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "default", "gateway.conf")


def pid_path(config: Config, options: Options) -> str:
    """Where the pid file lives: the ``pid`` directive or PREFIX/logs/gateway.pid."""
    return config.pid or os.path.join(prefix_of(options), DEFAULT_PID)


def load(options: Options) -> Config:
    """Load the configuration the options name; raises GatewayError (ConfigError)."""
    try:
        from gateway.config import load_config
    except ImportError as exc:
        raise GatewayError(f"the configuration loader is not available: {exc}") from exc
    return load_config(conf_path(options), prefix_of(options), options.globals_text)


def log_targets(config: Config, options: Options) -> list[tuple]:
    """The error log targets: the config's, else ``-e``, else PREFIX/logs/error.log at ``error``."""
    if config.error_logs:
        return [(target.path, target.level, target.syslog) if target.syslog is not None
                else (target.path, target.level) for target in config.error_logs]
    path = options.error_log or DEFAULT_ERROR_LOG
    if path != STDERR:
        path = os.path.join(prefix_of(options), path)
        if options.error_log is None:
            _ensure_default_directory(path)
    return [(path, "error")]


def _ensure_default_directory(path: str) -> None:
    # PREFIX/logs is the built-in place for the pid file and error log; create it so
    # `gateway` works from a fresh checkout, but never create a directory a user named.
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError:
        pass        # the open() that follows reports the problem in nginx's words


# Actions ----------------------------------------------------------------------

def show_version(options: Options) -> None:
    """``-v``/``-V`` on stderr, as nginx prints them."""
    lines = [f"gateway version: gateway/{__version__}"]
    if options.version > 1:
        import platform     # here, not at the top: every start would pay for what -V alone prints
        lines.append(f"built with Python {platform.python_version()}, {_uvloop_version()}")
        lines.append(f"Cython extensions: {_extensions_summary()}")
    sys.stderr.write("\n".join(lines) + "\n")


def _uvloop_version() -> str:
    try:
        import uvloop
    except ImportError:
        return "uvloop not installed (required)"
    return f"uvloop {uvloop.__version__}"


def _extensions_summary() -> str:
    import importlib.util
    import pkgutil
    try:
        import _fastpath
    except ImportError:
        return "none"
    found = {}
    for directory in _fastpath.__path__:
        for name in sorted(os.listdir(directory)):
            if name.endswith(".pyx"):
                found[name[:-4]] = False
    for module in pkgutil.iter_modules(_fastpath.__path__):
        spec = importlib.util.find_spec(f"_fastpath.{module.name}")
        if spec is not None and spec.origin and not spec.origin.endswith(".py"):
            found[module.name] = True
    if not found:
        return "none"
    disabled = os.environ.get("GATEWAY_NO_EXTENSIONS") == "1"
    parts = [f"{name} ({'built' if built else 'not built'})" for name, built in found.items()]
    return ", ".join(parts) + (" [disabled by GATEWAY_NO_EXTENSIONS=1]" if disabled else "")


def test_config(options: Options) -> int:
    """``-t``/``-T``: nginx's two lines (or the error and "test failed"), exit 0 or 1."""
    try:
        config = load(options)
    except GatewayError as exc:
        stderr_line("emerg", str(exc))
        sys.stderr.write(f"gateway: configuration file {conf_display(options)} test failed\n")
        return 1
    for warning in config.warnings:
        stderr_line("warn", warning)
    if not options.quiet:
        sys.stderr.write(f"gateway: the configuration file {config.file} syntax is ok\n"
                         f"gateway: configuration file {config.file} test is successful\n")
    if options.dump:
        sys.stdout.write(config.text)
        sys.stdout.flush()
    return 0


def send_signal(options: Options) -> int:
    """``-s NAME``: signal the master named by the configuration's pid file."""
    from gateway.process import pidfile, signals

    config = load(options)
    path = pid_path(config, options)
    try:
        pid = pidfile.read(path)
    except GatewayError as exc:
        stderr_line("error", str(exc))
        return 1
    try:
        signals.send(pid, options.signal)
    except GatewayError as exc:
        stderr_line("alert", str(exc))
        return 1
    return 0


def start(options: Options) -> int:
    """Run the gateway: master and workers (or a single process), detached unless ``daemon off``."""
    from gateway.process import daemon, master, pidfile, privileges, worker
    from gateway.process.listeners import Listeners

    config = load(options)
    log.configure(log_targets(config, options))
    for warning in config.warnings:
        log.warn(warning)
    worker.require_uvloop()
    worker.app_class()
    privileges.resolve(config)          # an unknown user fails here, on the terminal
    if config.user is not None and os.geteuid() != 0:
        log.warn('the "user" directive makes sense only if the master process runs '
                 "with super-user privileges, ignored")
    path = pid_path(config, options)
    if path == os.path.join(prefix_of(options), DEFAULT_PID):
        _ensure_default_directory(path)
    running = pidfile.running_master(path)
    if running is not None:
        # With reuseport a second instance could bind the same ports and take the pid file.
        raise GatewayError(f'a gateway master (pid {running}) is already running with '
                           f'the pid file "{path}"')
    listeners = Listeners()
    listeners.update(config, master.worker_count(config))
    ready = daemon.daemonize(keep_stderr=log.writes_to_stderr()) if config.daemon else None
    try:
        if not config.master_process:
            return master.run_single(config, listeners, path, ready)

        def reload_config() -> Config:
            return load(options)

        def apply_logs(new: Config) -> None:
            log.configure(log_targets(new, options))

        return master.Master(config, listeners, path, reload_config, apply_logs).run(ready)
    except GatewayError as exc:
        if ready is not None:
            ready.report(str(exc))
        raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gateway`` and ``python -m gateway``; returns the exit status."""
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stderr.write(f"gateway: {exc}\n")
        return 1
    if options.help:
        sys.stderr.write(f"gateway version: gateway/{__version__}\n{USAGE}")
        return 0
    if options.version:
        show_version(options)
        if not (options.test or options.signal):
            return 0
    try:
        if options.test:
            return test_config(options)
        if options.signal:
            return send_signal(options)
        return start(options)
    except GatewayError as exc:
        _report_fatal(str(exc))
    except BrokenPipeError:
        # `gateway -T | head`: the reader left; stay quiet like other Unix tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as exc:
        _report_fatal(_describe_os_error(exc))
    except KeyboardInterrupt:
        pass
    except Exception as exc:    # a bug: one line for the user, the traceback for the log
        if not log.writes_to_stderr():
            log.alert(traceback.format_exc().rstrip())
        _report_fatal(f"internal error: {type(exc).__name__}: {exc}")
    return 1


def _report_fatal(message: str) -> None:
    stderr_line("emerg", message)
    if not log.writes_to_stderr():
        log.emerg(message)


def _describe_os_error(exc: OSError) -> str:
    if exc.filename is not None:
        return f'"{exc.filename}" failed ({exc.errno}: {exc.strerror})'
    return f"{exc.strerror or exc} ({exc.errno})"

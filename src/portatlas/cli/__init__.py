"""portatlas command line: `portatlas 57`, `portatlas search ...`, `portatlas local`, ...

Each command lives in its own module and is imported only when used, so a plain lookup
pays for nothing else.
"""

from __future__ import annotations

import sys

# command name -> module with a `main(argv: list[str]) -> int`
COMMANDS = {
    "search": "portatlas.cli.search",
    "data": "portatlas.cli.data",
    "local": "portatlas.cli.local",
    "free": "portatlas.cli.local",
    "check": "portatlas.cli.scan",
    "scan": "portatlas.cli.scan",
    "serve": "portatlas.cli.serve",
    "history": "portatlas.cli.history",
    "changes": "portatlas.cli.changes",
    "port": "portatlas.cli.port",
}

OVERVIEW = """\
usage: portatlas PORT[/TRANSPORT] | RANGE | SERVICE [--json]
       portatlas COMMAND [options]   (portatlas COMMAND --help for its options)

What runs on port N? Ask by port (57, 57/tcp), range (6000-6010) or service name (http).

commands:
  search TEXT        ranked free-text search of the registry and notes ("mail transfer")
  local              what listens on this machine (like ss -tulpn), with flags
  free PORT          end the process holding PORT (asks first)
  check HOST PORT    is it open there, and what answers
  scan TARGETS       sweep ports on hosts you name
  history PORT       a port's registry history and real-world use
  changes            what appeared or changed between saved snapshots (local --save, scan --save)
  data update|info|diff|history  manage the registry database
  serve              the atlas in your browser (local web UI)

every command takes --json; exit codes: 0 found, 1 not found, 2 usage error,
3 data problem, 4 network/system failure, 130 interrupted.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:  # a usage error: the usage goes to stderr, the exit code says so
        sys.stderr.write(OVERVIEW)
        return 2
    if args[0] in ("-h", "--help", "help"):
        sys.stdout.write(OVERVIEW)
        return 0
    if args[0] in ("-V", "--version"):
        # lazy: cli/__init__ imports only sys; `--version` alone needs the version string
        from portatlas import __version__

        print(f"portatlas {__version__}")
        return 0
    name = args[0]
    if name in COMMANDS:
        module_name, rest = COMMANDS[name], args[1:]
        if name in ("check", "scan", "free"):
            rest = args  # these modules serve two commands and need to know which
    else:
        module_name, rest = COMMANDS["port"], args
    return run_command(module_name, rest)


def run_command(module_name: str, argv: list[str]) -> int:
    """Import and run a command; turn every expected failure into one line and an exit code."""
    # lazy: cli/__init__ imports only sys, so `portatlas --help` loads nothing else
    from portatlas.textsafe import SafeStream

    # Whatever a command prints passes a filter that lets no control sequence through but
    # portatlas's own colours (portatlas/textsafe.py): the backstop behind the renderers.
    saved = sys.stdout, sys.stderr
    if sys.stdout is not None and not isinstance(sys.stdout, SafeStream):
        sys.stdout = SafeStream(sys.stdout)  # type: ignore[assignment]
    if sys.stderr is not None and not isinstance(sys.stderr, SafeStream):
        sys.stderr = SafeStream(sys.stderr)  # type: ignore[assignment]
    try:
        return _run(module_name, argv)
    finally:
        if sys.stdout is not None:
            sys.stdout, sys.stderr = saved


def _run(module_name: str, argv: list[str]) -> int:
    # lazy: as in run_command (cli/__init__ imports only sys)
    from portatlas.errors import EXIT_INTERRUPTED, PortatlasError

    try:
        import importlib  # lazy: as above; `--help`/`--version` never reach this

        module = importlib.import_module(module_name)
        return int(module.main(argv) or 0)
    except PortatlasError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. `| head`); not an error worth a message
        try:
            sys.stdout = None  # type: ignore[assignment]
        finally:
            return 0
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("portatlas"):
            _error(f"this command is not available in this installation ({exc.name})")
        else:
            _error(f"a dependency is missing: {exc.name} (pip install 'portatlas[web,tls]')")
        return 4


def _error(message: str) -> None:
    line = " ".join(message.split())
    print(f"portatlas: error: {line}", file=sys.stderr)


def open_atlas(db: str | None):
    """The Atlas for a CLI run; a first-time build announces itself on stderr."""
    # lazy: only commands that read the database load atlas (not `--help`)
    from portatlas.atlas import Atlas

    return Atlas(db, notify=lambda msg: print(msg, file=sys.stderr))

"""Command-line plumbing shared by the plugin's commands: flags, and errors without tracebacks."""

import sys
import traceback

from recbole_bifair.errors import BiFairError, ConfigError


def split_flags(argv, flags):
    """Take ``--name=value`` for each of ``flags`` and the bare ``--debug`` out of ``argv``.

    Returns (values, debug, rest): ``rest`` are the RecBole ``--key=value`` overrides.
    """
    values, rest, debug = {}, [], False
    for arg in argv:
        if arg == "--debug":
            debug = True
            continue
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name in flags:
            value = arg.split("=", 1)[1] if "=" in arg else ""
            if not value.strip():
                raise ConfigError(f"'{arg}' needs a value: write --{name}=VALUE")
            values[name] = value
        else:
            rest.append(arg)
    return values, debug, rest


def run_cli(main, argv=None, usage=""):
    """Run ``main(argv)``; print a user error on one line of stderr and exit non-zero."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        return 0
    debug = "--debug" in argv
    try:
        main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BiFairError as err:
        if debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # RecBole's own checks raise plain ValueError/KeyError/... on bad input
        if debug:
            traceback.print_exc()
        print(f"error: {type(err).__name__}: {err}  (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0

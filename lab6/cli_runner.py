"""How the ``lab6`` command runs a verb, whichever it is: a failure or a warning in one line, an unknown argument
refused by the verb's own parser with its nearest options, and ``--debug`` (or ``LAB6_DEBUG=1``) for Python's own
forms (the traceback, file:line warnings). The verbs and their options are ``lab6.cli``'s.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import warnings
from pathlib import Path


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on every verb (and sub-verb): show the traceback of a failure instead of one line."""
    parser.add_argument("--debug", action="store_true", help="on failure, show the Python traceback (or LAB6_DEBUG=1)")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_debug_flag(sub)


def _verb_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The parser of the verb (and sub-verb, as ``data render``) that ``args`` was read by."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return _verb_parser(action.choices[getattr(args, action.dest)], args)
    return parser


def _refuse_unknown(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """Exit with the verb's usage, naming the unknown arguments and the verb's nearest options."""
    options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    near = dict.fromkeys(m for u in unknown if u.startswith("-")  # best match first
                         for m in difflib.get_close_matches(u.split("=")[0], options, n=2, cutoff=0.75))
    suggestion = f" (did you mean {', '.join(near)}?)" if near else ""
    parser.error(f"unrecognized arguments: {' '.join(unknown)}{suggestion}")


def _warn_in_one_line(verb: str) -> None:
    """lab6's own warnings (a condition beyond the training scenes, ...) as ``lab6 VERB: warning: ...``, each
    message once, instead of Python's file:line form that reads like a traceback (``--debug`` keeps that form)."""
    package, python_form = Path(__file__).parent, warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if Path(filename).resolve().is_relative_to(package):
            print(f"lab6 {verb}: warning: {message}", file=sys.stderr)
        else:
            python_form(message, category, filename, lineno, file, line)

    warnings.filterwarnings("once", module=r"lab6\.")
    warnings.showwarning = show


def run_verb(parser: argparse.ArgumentParser, argv: list[str] | None,
             expected_errors: tuple[type[Exception], ...]) -> int:
    """Read ``argv`` with ``parser`` (whose verbs set ``func``) and run the verb. A failure ends in one line,
    ``lab6 VERB: error: ...``, and exit status 2 (130 when interrupted): one of ``expected_errors`` (its message
    says what is wrong and what to do) as it is, any other with its kind and a pointer to ``--debug``."""
    _add_debug_flag(parser)
    args, unknown = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed: a verb may run itself again (--processes)
    if unknown:  # argparse would blame "lab6" and show its usage; the verb's own usage says what it takes
        _refuse_unknown(_verb_parser(parser, args), unknown)
    debug = getattr(args, "debug", False) or os.environ.get("LAB6_DEBUG", "").strip() not in ("", "0")
    try:
        with warnings.catch_warnings():
            if not debug:
                _warn_in_one_line(args.verb)
            args.func(args)
    except KeyboardInterrupt:
        print(f"lab6 {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # every failure, expected or not, is one line unless --debug
        if debug:
            raise
        lines = str(err).strip().splitlines()
        message = lines[0] if lines else "no details"
        if not isinstance(err, expected_errors):  # a bug or an unforeseen input: name its kind, point to --debug
            message = f"{type(err).__name__}: {message} (run again with --debug for the traceback)"
        print(f"lab6 {args.verb}: error: {message}", file=sys.stderr)
        return 2
    return 0

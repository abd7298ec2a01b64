"""The front door: ``vif-qos SUBCOMMAND ...``.

:data:`COMMANDS` names each subcommand's module: ``vif_qos.cli.<name>`` (``-``
written ``_``) for the admin's commands, :mod:`vif_qos.xen.hotplug` for the hotplug
commands, :mod:`vif_qos.sim.simulate` for ``simulate``. An admin's command module
provides ``configure(parser, name)`` (add its arguments to an argparse parser) and
``run(args) -> int``; the hotplug commands (``online``, ``offline``, ``add``,
``remove``) take Xen's ``key=value`` words rather than options, through
``hotplug_main(command, argv) -> int``. Only the chosen module is imported, so a
hotplug run does not pay for ``simulate``'s imports.

For the admin's commands, this is where :class:`vif_qos.errors.VifQosError`
becomes an exit status and a one-line message on stderr (the hotplug commands do
their own, see :mod:`vif_qos.errors`); set ``VIF_QOS_DEBUG=1`` to also get the
traceback of an unexpected error.

Every admin's command that reads the policy file takes it as ``--config FILE``
(:func:`add_config_option`; default ``$VIF_QOS_CONFIG``, else
``/etc/xen/vif-qos.conf``); the hotplug commands and ``serve`` read
``$VIF_QOS_CONFIG`` only (they run from Xen's scripts and systemd, and the hook
and the service must agree on it). The older spellings ``--conf FILE`` and
``check-config FILE`` are still accepted, each with a warning on stderr
(:data:`DEPRECATED_OPTIONS`, :data:`POSITIONAL_CONFIG`), so that a dom0's own
scripts and units keep working.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional, Tuple

from vif_qos import __version__
from vif_qos.errors import InputError, VifQosError, one_line

#: name -> (module, one-line help)
COMMANDS = {
    "plan": ("vif_qos.cli.plan", "print the resolved shaping plan of a vif and where each value came from"),
    "check-config": ("vif_qos.cli.check_config", "validate the policy file and the domain config files it reads"),
    "online": ("vif_qos.xen.hotplug", "Xen hotplug: shape a PV vif (run by vif-bridge's hook or as script=)"),
    "offline": ("vif_qos.xen.hotplug", "Xen hotplug: remove a PV vif's shaping (best effort, exits 0)"),
    "add": ("vif_qos.xen.hotplug", "Xen hotplug: shape an HVM -emu tap"),
    "remove": ("vif_qos.xen.hotplug", "Xen hotplug: remove an HVM -emu tap's shaping (best effort, exits 0)"),
    "cleanup": ("vif_qos.cli.cleanup", "remove the shaping of vifs whose netdev is gone (run by udev)"),
    "status": ("vif_qos.cli.status", "show what vif-qos has applied, read back from the kernel"),
    "set": ("vif_qos.cli.set_override", "override a running (or future) guest's qos keys now and at every online"),
    "assign": ("vif_qos.cli.assign", "move a guest into a pool (or out: none); set TARGET pool=POOL"),
    "unset": ("vif_qos.cli.unset", "remove an operator override (or some of its keys)"),
    "overrides": ("vif_qos.cli.overrides", "list the operator overrides with who, when, why and expiry"),
    "reload": ("vif_qos.cli.reload", "re-resolve every running vif and change the kernel to match, in place"),
    "check": ("vif_qos.cli.check", "compare the kernel with what reload would make (exit 0 in sync, 1 not)"),
    "install": ("vif_qos.cli.install", "put the vif-bridge hook, the script= wrapper, udev rules and the policy file in place"),
    "uninstall": ("vif_qos.cli.install", "remove what install put in place"),
    "record": ("vif_qos.cli.record", "record one usage sample of every running vif and uplink (run by a timer)"),
    "report": ("vif_qos.cli.report", "usage and the 95th percentile per guest and in total; --plot, --json, --csv"),
    "metrics": ("vif_qos.cli.metrics", "write the counters for node_exporter's textfile collector"),
    "serve": ("vif_qos.cli.serve", "the resident service answering the hook over a unix socket (optional; systemd socket activation)"),
    "simulate": ("vif_qos.sim.simulate", "build a simulated dom0 in network namespaces, shape guests and measure them"),
}

HOTPLUG_COMMANDS = ("online", "offline", "add", "remove")

#: The policy file option's help, the same in every command.
CONFIG_HELP = "policy file (default: $VIF_QOS_CONFIG or /etc/xen/vif-qos.conf)"

#: Older option spellings still accepted (with a warning) -> the option now.
DEPRECATED_OPTIONS = {"--conf": "--config"}
#: Commands that took the policy file as a plain argument (``check-config FILE``);
#: it is read as ``--config FILE`` (with a warning).
POSITIONAL_CONFIG = ("check-config",)


def add_config_option(parser: argparse.ArgumentParser, reads: str = "") -> None:
    """The one spelling of the policy file: ``--config FILE`` (``args.config``,
    None when not given). ``reads``: the part the command reads, named in the help
    (``"[billing]"``: "policy file, its [billing] (default: ...)")."""
    help_text = CONFIG_HELP.replace("policy file", f"policy file, its {reads}", 1) \
        if reads else CONFIG_HELP
    parser.add_argument("--config", metavar="FILE", help=help_text)


def modern_argv(name: str, args: List[str], parser: argparse.ArgumentParser
                ) -> Tuple[List[str], List[str]]:
    """``args`` (a command's arguments) with the deprecated spellings rewritten to
    ``--config``, and one warning per rewrite. Only for a command whose ``parser``
    has ``--config``; nothing after ``--`` is an option; the first plain argument
    of a :data:`POSITIONAL_CONFIG` command is its policy file unless ``--config``
    is given too (a second one stays, and argparse refuses it)."""
    if "--config" not in parser._option_string_actions:
        return list(args), []
    out: List[str] = []
    warnings: List[str] = []
    plain: List[int] = []  # where the plain arguments are in out
    options_end = takes_value = False
    for word in args:
        if takes_value:
            takes_value = False
        elif options_end or not word.startswith("-") or word == "-":
            plain.append(len(out))
        elif word == "--":
            options_end = True
        else:
            written, eq, value = word.partition("=")
            option = DEPRECATED_OPTIONS.get(written, written)
            if option != written:
                warnings.append(f"{written} is a deprecated spelling of {option}: use "
                                f"{option} (still accepted)")
                word = option + eq + value
            action = parser._option_string_actions.get(option)
            takes_value = not eq and action is not None and action.nargs != 0
        out.append(word)
    given = any(w.partition("=")[0] == "--config" for i, w in enumerate(out)
                if i not in plain)
    if name in POSITIONAL_CONFIG and plain and not given:
        path = out.pop(plain[0])
        out.insert(0, f"--config={path}")
        warnings.append("the policy file as a plain argument is a deprecated spelling "
                        "of --config FILE: use --config (still accepted)")
    return out, warnings


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one :class:`InputError` line (exit 2), not a
    usage block followed by the error."""

    def error(self, message: str):  # type: ignore[override]
        raise InputError(f"{message} ('{self.prog} --help' lists the options)")


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: vif-qos COMMAND [ARGS]   (vif-qos {__version__})", "", "commands:"]
    for name, (_module, text) in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {text}")
    lines.append("")
    lines.append("'vif-qos COMMAND --help' describes one command.")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; return its exit status (also used as the console script).

    A reader that goes away (``vif-qos plan | head -1``) ends the command quietly
    with status 141, as a shell reports a process killed by SIGPIPE.
    """
    if sys.stdout is None or sys.stderr is None:
        # Started with fd 1 or 2 closed (``vif-qos --version >&-``): Python set the
        # stream to None, and print() would drop what a later open() gets as fd 1.
        _reopen_closed_streams()
    try:
        status = _main(argv)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _reopen_closed_streams() -> None:
    """Point a closed fd 1 or 2 at /dev/null (and the stream at it), so that a
    file or socket opened later never becomes fd 1 and receives our output."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
            setattr(sys, name, open(fd, "w", closefd=False))


def _main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"vif-qos: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
        if name in HOTPLUG_COMMANDS:
            return int(module.hotplug_main(name, argv[1:]) or 0)
        parser = _Parser(prog=f"vif-qos {name}", description=text)
        module.configure(parser, name)
        words, warnings = modern_argv(name, argv[1:], parser)
        for warning in warnings:
            print(f"vif-qos {name}: warning: {warning}", file=sys.stderr)
        args = parser.parse_args(words)
        return int(module.run(args) or 0)
    except VifQosError as err:
        print(f"vif-qos {name}: {err.one_line()}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print(f"vif-qos {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise
    except Exception as err:  # an unexpected bug: one line, traceback on request
        if os.environ.get("VIF_QOS_DEBUG"):
            raise
        print(f"vif-qos {name}: {one_line(err)} (VIF_QOS_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

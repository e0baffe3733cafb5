"""The ``rcl`` command line. Every command has ``--help``.

Noise levels σ are given on the 0–255 scale, as in the literature (``--noise gaussian:25``,
``--noise gaussian:5-50``). Bad input ends with a one-line error naming the culprit and exit
status 2; outputs are written atomically and inputs are never overwritten.

One module per command (pretrain, finetune, evaluate, restore, demo, benchmark); what they share
is in ``common``; the task options (``--task``, ``--scale``, ``--pattern``, default ``--noise``) are
generated from the task registry in ``task_options``, and no command branches on a task name.
"""

from __future__ import annotations

import sys
import warnings

import typer
from typer.core import TyperGroup

from . import benchmark, demo, estimate_noise, evaluate, finetune, noise_corr, pretrain, restore
from .common import UsageError, errors_to_exit

__all__ = ["app", "main", "UsageError", "errors_to_exit"]

# The argument parser's exception classes: click's, or the copy of click that newer typer vendors.
_parser_errors = sys.modules[typer.BadParameter.__module__]
_NoArgsIsHelp = getattr(_parser_errors, "NoArgsIsHelpError", type("_NeverRaised", (Exception,), {}))


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace(": Value error, ", ": ")  # pydantic's prefix (enum choices)


class _OneLineErrors(TyperGroup):
    """The root command: parser errors (a missing argument, an unknown option, ``--seed 1e23``)
    end like every other error, with one line ``error: …`` on stderr and exit status 2, instead of
    the argument parser's usage box. ``rcl`` alone still prints the help."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        except _NoArgsIsHelp as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            code = 2
        except _parser_errors.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            typer.echo(f"error: {_one_line(exc.format_message())}{where}", err=True)
            code = 2
        except _parser_errors.ClickException as exc:
            typer.echo(f"error: {_one_line(exc.format_message())}", err=True)
            code = exc.exit_code if exc.exit_code else 2
        except typer.Abort as exc:
            from .common import Terminated

            term = isinstance(exc.__cause__, Terminated)
            typer.echo(f"error: {'stopped by SIGTERM' if term else 'interrupted'}", err=True)
            code = 143 if term else 130
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rcl — Residual Contrastive Learning: pre-train restoration networks on noisy "
                       "images, fine-tune with few labels, restore and measure.")

# The commands, in the order `rcl --help` lists them.
app.command("pretrain")(pretrain.pretrain)
app.command("finetune")(finetune.finetune)
app.command("evaluate")(evaluate.evaluate)
app.command("restore")(restore.restore)
app.command("denoise", help=restore.DENOISE_ALIAS_HELP)(restore.restore)
app.command("demo")(demo.demo)
app.command("benchmark")(benchmark.benchmark)
app.command("noise-corr")(noise_corr.noise_corr)
app.command("estimate-noise")(estimate_noise.estimate_noise)


def _sigterm_to_interrupt(signum, frame):
    from .common import Terminated

    raise Terminated


def main() -> None:  # console-script entry point
    """Run the CLI; SIGTERM and Ctrl-C end it cleanly (exit 143 / 130, partial outputs removed)."""
    import signal

    from ..distributed import init_from_env, shutdown

    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    try:
        init_from_env()  # under torchrun: join the process group (rank 0 alone writes outputs)
        app()
    except KeyboardInterrupt:
        from .common import interrupt_message, interrupt_status

        typer.echo(f"error: {interrupt_message()}", err=True)
        sys.exit(interrupt_status())
    finally:
        shutdown()

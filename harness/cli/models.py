"""`harness models [PATTERN]`: the registered architectures."""

from __future__ import annotations

from harness.errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list registered model architectures")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.models import get_model_info, list_models
    from harness.report.render import make_console, models_table

    make_console().print(models_table([get_model_info(name) for name in list_models(args.pattern)]))
    return EXIT_OK

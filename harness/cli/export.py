"""`harness export MODEL`: export one model to ONNX and print its parity proof."""

from __future__ import annotations

import dataclasses

from harness.cli.options import (add_model_options, add_suite_option, copy_out, parity_images, resolve_spec,
                                 writable_file)
from harness.errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX and prove parity on real images")
    p.add_argument("model", help="suite entry, registry name, or a .onnx file of your own")
    p.add_argument("--out", help="also copy the ONNX file here")
    add_model_options(p)
    add_suite_option(p)
    p.add_argument("--data", help="images/ + masks/ folder for the parity check (default: the suite's)")
    p.set_defaults(run=run)


def run(args) -> int:
    from rich.markup import escape

    from harness.export import export_spec
    from harness.report.render import export_table, make_console
    from harness.spec import load_suite

    writable_file(args.out, "--out")
    suite = load_suite(args.suite)
    spec = resolve_spec(args, suite)
    images_u8 = parity_images(suite, spec, args.data)
    console = make_console()
    with console.status(f"exporting {escape(spec.name)} and checking parity on {len(images_u8)} real images"):
        exported = export_spec(spec, images_u8)
    exported = dataclasses.replace(exported, path=copy_out(exported.path, args.out))
    console.print(export_table(exported))
    return EXIT_OK

"""`harness quantize MODEL --method M`: make one variant of a model's export."""

from __future__ import annotations

import dataclasses

from harness.cli.options import (add_data_options, add_model_options, bench_inputs, copy_out, parity_images,
                                 resolve_spec, writable_file)
from harness.errors import EXIT_OK

# The short names of earlier releases; any registered variant name works too.
METHOD_ALIASES = {"static": "int8-static", "dynamic": "int8-dynamic"}


def add_parser(sub) -> None:
    from harness.variants import get_variant, list_variants

    p = sub.add_parser("quantize", help="make one int8 or fp16 variant of a model (ONNX Runtime's quantizers, or NNCF for int8-nncf)")
    p.add_argument("model", help="suite entry, registry name, or a .onnx file of your own")
    p.add_argument("--method", required=True, choices=[*METHOD_ALIASES, *(v for v in list_variants() if get_variant(v).make is not None)],
                   help="a variant (as targets name them), or static / dynamic for int8-static / int8-dynamic")
    p.add_argument("--out", help="also copy the variant's ONNX file here")
    add_model_options(p)
    add_data_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from rich.markup import escape
    from rich.progress import Progress

    from harness.bench import calibration_bar, make_variant, plan_bench
    from harness.export import export_spec
    from harness.files import project_root
    from harness.report.render import make_console
    from harness.spec import load_suite
    from harness.targets import TargetProfile
    from harness.variants.book import FOLDER

    writable_file(args.out, "--out")
    suite = load_suite(args.suite)
    spec = resolve_spec(args, suite)
    variant = METHOD_ALIASES.get(args.method, args.method)
    images_u8 = parity_images(suite, spec, args.data)
    console = make_console()
    with console.status(f"exporting {escape(spec.name)}"):
        exported = export_spec(spec, images_u8)
    one_variant = TargetProfile.from_flat("quantize", threads=1, variants=(variant,))
    book = project_root() / "results" / FOLDER  # the project's committed ranges: the file harness bench makes
    plan = plan_bench(suite, one_variant, dataclasses.replace(bench_inputs(args, suite), calibration_book=book))
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"make {variant}", total=None)
        made = make_variant(plan, spec, exported, variant, say=lambda message: progress.update(bar, description=escape(message)),
                            on_calibration=calibration_bar(progress, spec.name))
    out = copy_out(made.path, args.out)
    console.print(f"{escape(spec.name)} {variant}: {escape(str(out))} ({made.file_mb:.2f} MB, fp32 {exported.file_mb:.2f} MB, "
                  f"{100 * made.file_mb / exported.file_mb:.0f} %){' [cached]' if made.cached else ''}")
    console.print(escape(f"recipe: {made.recipe}"))
    if made.nodes_in_float:
        console.print(escape(f"left in float: {', '.join(made.nodes_in_float)}"))
    console.print("accuracy and speed: run harness bench, which measures every variant against fp32 in one run")
    return EXIT_OK

"""The winner written where the gate guards it: a [variant.NAME] table in the project's copy of the target, listed
in its variants (and ship), with its calibration ranges in the book, so any machine rebuilds its very file."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from harness.errors import HarnessError
from harness.files import project_root, write_text_atomic
from harness.targets import BUILTIN_TARGETS_DIR, TargetProfile, load_target
from harness.variants.named import NamedVariant


def target_file_for(target: TargetProfile) -> tuple[Path, Path | None]:
    """Where the winner goes: the target's own file, or for a built-in profile the project's targets/NAME.toml (which
    overrides the built-in one), started from the built-in text."""
    source = target.source
    if source is None:
        raise HarnessError(f"{target.where} has no file to write to; pass --target a .toml file")
    if source.resolve().parent == BUILTIN_TARGETS_DIR.resolve():
        return project_root() / "targets" / source.name, source
    return source, None


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string is a JSON string


def table_text(named: NamedVariant) -> str:
    """[variant.NAME] and its backends' tables, as TOML."""
    table = named.as_table()
    flat = {k: v for k, v in table.items() if not isinstance(v, dict)}
    lines = [f"[variant.{named.name}]", *(f"{k} = {toml_value(v)}" for k, v in flat.items())]
    for backend, options in ((k, v) for k, v in table.items() if isinstance(v, dict)):
        lines += [f"[variant.{named.name}.{backend}]", *(f"{k} = {toml_value(v)}" for k, v in options.items())]
    return "\n".join(lines) + "\n"


def with_named_variant(text: str, named: NamedVariant, ship: bool) -> str:
    """The target's TOML text with `named` declared (replacing a table of that name), listed in variants, and in
    ship where the file has a ship list (without one, every measured variant ships already)."""
    text = _without_table(text, named.name)
    for key in ("variants", "ship") if ship else ("variants",):
        if re.search(rf"(?m)^\s*{key}\s*=\s*\[[^\]\n]*$", text):  # an array over several lines: comments inside
            raise HarnessError(f"{key} spans several lines in the target file: put it on one line, or add "
                               f"{named.name} to it by hand")
        match = re.search(rf"(?m)^\s*{key}\s*=\s*\[([^\]\n]*)\]", text)
        if match is None:
            if key == "variants":
                text = f'variants = ["fp32", {toml_value(named.name)}]\n' + text
            continue
        names = [a or b for a, b in re.findall(r'"([^"]*)"|\'([^\']*)\'', match.group(1))]
        if named.name not in names:
            names.append(named.name)
        text = text[:match.start()] + f"{key} = {toml_value(names)}" + text[match.end():]
    return text.rstrip("\n") + "\n\n" + table_text(named)


def _without_table(text: str, name: str) -> str:
    """The text without [variant.NAME] and its sub-tables (each runs to the next table header)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        header = re.match(r"\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if header:
            skipping = header.group(1).strip() in (f"variant.{name}",) or header.group(1).strip().startswith(
                f"variant.{name}.")
        if not skipping:
            out.append(line)
    return "".join(out)


def write_named_variant(target: TargetProfile, named: NamedVariant, ship: bool = True) -> tuple[Path, Path | None]:
    """Write `named` into the target's file (or the project's copy of a built-in one), checked by reading it back."""
    path, copied_from = target_file_for(target)
    text = (copied_from or path).read_text(encoding="utf-8-sig") if (copied_from or path).is_file() else ""
    if copied_from is not None and path.is_file():
        text = path.read_text(encoding="utf-8-sig")
        copied_from = None  # the project's copy exists already: it is the one written
    new_text = with_named_variant(text, named, ship)
    with tempfile.TemporaryDirectory() as tmp:  # read back before the real file changes
        trial = Path(tmp) / path.name
        trial.write_text(new_text, encoding="utf-8")
        written = load_target(str(trial)).scenario.variant(named.name).named
    if written != named:
        raise HarnessError(f"{path}: [variant.{named.name}] would read back otherwise ({written}); edit it by hand")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, new_text)
    return path, copied_from

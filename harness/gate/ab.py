"""Same-run A/B: rebuild the recorded version of a changed model from git, to measure it beside the new one.

Latency recorded on another machine, or minutes ago on a shared one, says little about this run. When
a model's export differs from the one the record measured (its ONNX sha256), the model's suite entry,
checkpoint and factory code are taken from the commit the record was made at (`git archive`, into a
temporary folder), exported with today's harness (variants that come out identical to today's are made
again by that commit's own harness code), and measured in lockstep children beside the new version
under the same target. Outside a git checkout, or when the commit is gone, the gate
says so and falls back to the record's figures.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.measure.backends import options_text, run_name, same_release
from harness.variants.registry import VARIANTS
from harness.results import ResultRow, RowKey, record_key
from harness.spec import ModelSpec, find_spec, load_suite


def git(args: list[str], cwd: Path) -> str | None:
    """git's output, stripped; None when git fails or is missing."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.decode(errors="replace").strip() if proc.returncode == 0 else None


def resolve_commit(root: Path, rev: str) -> str | None:
    """The full hash of the commit `rev` (a hash, tag or branch) names in the repository at `root`, or None."""
    if not rev or rev.startswith("-"):
        return None
    return git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root) or None


def repo_root(path: Path) -> Path | None:
    top = git(["rev-parse", "--show-toplevel"], Path(path).resolve().parent)
    return Path(top) if top else None


def current_commit(suite_path: Path) -> str:
    """The commit the suite's files are at, '-dirty' when the suite's folder has uncommitted changes; '' outside git."""
    folder = Path(suite_path).resolve().parent
    head = git(["rev-parse", "HEAD"], folder)
    if not head:
        return ""
    dirty = git(["status", "--porcelain", "--", "."], folder)
    return head + ("-dirty" if dirty else "")


def committed_keys(record_path: Path) -> set[RowKey]:
    """The key (model, variant, serving mode, backend) of every row in the committed version (HEAD) of a record; empty
    outside git."""
    import csv

    root = repo_root(record_path)
    if root is None:
        return set()
    relative = Path(record_path).resolve().relative_to(root)
    text = git(["show", f"HEAD:{relative.as_posix()}"], root)
    if not text:
        return set()
    return {record_key(r) for r in csv.DictReader(io.StringIO(text))}


@dataclass(frozen=True)
class Partner:
    """The recorded version of one model, or why there is none."""

    spec: ModelSpec | None
    rev: str
    reason: str = ""  # set when spec is None


class Baselines:
    """Finds, for each changed model, its version at the record's commit (or at --against REV)."""

    def __init__(self, suite_path: Path, recorded: list[ResultRow], against: str | None = None):
        self.suite_path, self.against = Path(suite_path), against
        ort = [r for r in recorded if r.on_reference_backend]  # the runtime the A/B rebuilds
        # The configuration the children ran: a served row's session options are the service's (it never spins).
        in_children = [r for r in ort if not r.served] or ort
        self.recorded = {r.model: r for r in in_children if r.variant == "fp32"} or {r.model: r for r in in_children or recorded}
        self.by_variant = {(r.model, r.variant): r.onnx_sha256 for r in recorded if r.status == "ok"}
        # another backend's runtime release, as its rows recorded it: an upgrade is A/B'd like onnxruntime's
        self.backend_versions = {(r.model, r.runtime): r.backend_version for r in recorded
                                 if r.status == "ok" and not r.on_reference_backend and r.backend_version}
        # the target's [backend] table as rows recorded it: a named variant's rows ran with options of their own
        self.backend_options = {(r.model, r.runtime): r.backend_options for r in recorded if not r.on_reference_backend
                                and r.backend_options and r.variant in VARIANTS.names()}  # "": before schema 8
        self.by_run = {(r.model, run_name(r.runtime, r.variant)): r for r in recorded if not r.served}
        self.root = repo_root(self.suite_path)

    def changes(self, name: str, files: dict[str, str], runtime: dict, installed: dict[str, str | None] | None = None,
                options: dict[str, str] | None = None, run_options: dict[str, dict] | None = None) -> tuple[list[str], str]:
        """What changed since the record for model `name` that can change its latency, and how that reads.

        `files`: variant -> sha256 of the file made now; `runtime`: the recorded row's configuration fields
        (ort_version, threads, cpu_mem_arena, mem_pattern, allow_spinning, images_at_once) as they are now;
        `installed`: another backend -> its runtime's release now; `options`: another backend -> its options now
        (backends.options_text); `run_options`: a named variant's run -> the options it runs with now. Kinds: "files"
        (the export or any variant's
        file), "runtime" (onnxruntime's or another backend's release), "options".
        """
        if self.against:
            return ["files"], f"A/B against {self.against}"
        row = self.recorded.get(name)
        if row is None:
            return [], "no recorded row"
        kinds, said = [], []
        if not row.onnx_sha256:
            said.append("the record holds no file hash (re-record with --update to enable A/B)")
        else:
            changed = sorted(v for v, sha in files.items() if self.variant_sha(name, v) not in ("", None, sha))
            if changed:
                kinds.append("files")
                said.append(f"{', '.join(changed)} file changed since the record")
        if row.ort_version and runtime.get("ort_version") and row.ort_version != runtime["ort_version"]:
            kinds.append("runtime")
            said.append(f"recorded with onnxruntime {row.ort_version}, installed {runtime['ort_version']}")
        for backend, (recorded, now) in self.upgraded(name, installed or {}).items():
            kinds.append("runtime")
            said.append(f"recorded with {backend} {recorded}, installed {now}")
        changed = [f"{k} {getattr(row, k)} → {v}" for k, v in runtime.items()
                   if k != "ort_version" and getattr(row, k, None) is not None and getattr(row, k) != v]
        changed += [f"{b} options {old} → {new}" for b, (old, new) in self.options_changed(name, options or {}).items()]
        changed += [f"{run} options {options_text(old)} → {options_text(new)}"
                    for run, (old, new) in self.run_options_changed(name, run_options or {}).items()]
        if changed:
            kinds.append("options")
            said.append("session options changed since the record (" + ", ".join(changed) + ")")
        return kinds, "; ".join(said) or "file, runtime and session options unchanged since the record"

    def upgraded(self, name: str, installed: dict[str, str | None]) -> dict[str, tuple[str, str]]:
        """Another backend whose runtime release differs from the one `name`'s rows recorded: (recorded, installed)."""
        return {backend: (recorded, installed[backend]) for (model, backend), recorded in self.backend_versions.items()
                if model == name and installed.get(backend) and not same_release(recorded, installed[backend])}

    def options_changed(self, name: str, options: dict[str, str]) -> dict[str, tuple[str, str]]:
        """Another backend whose options differ from those `name`'s rows recorded: (recorded, now), as JSON."""
        return {backend: (recorded, options[backend]) for (model, backend), recorded in self.backend_options.items()
                if model == name and backend in options and options[backend] != recorded}

    def variant_sha(self, name: str, variant: str) -> str | None:
        return self.by_variant.get((name, variant))

    def run_options_changed(self, name: str, now: dict[str, dict]) -> dict[str, tuple[dict, dict]]:
        """A named variant's run whose options differ from those its row recorded: run -> (recorded, now)."""
        changed = {}
        for run, options in now.items():
            row = self.by_run.get((name, run))
            if row is None:
                continue
            if row.on_reference_backend:
                recorded = {k: v for k, v in {"enable_cpu_mem_arena": row.cpu_mem_arena, "enable_mem_pattern": row.mem_pattern,
                                              "allow_spinning": row.allow_spinning}.items() if v is not None}
            else:
                recorded = json.loads(row.backend_options) if row.backend_options else {}
            if any(options.get(k) != v for k, v in recorded.items()):
                changed[run] = ({**options, **recorded}, options)
        return changed

    def recorded_options(self, name: str) -> dict:
        """Request fields as the record ran them (for an options A/B)."""
        row = self.recorded[name]
        return {k: v for k, v in {"threads": row.threads, "images_at_once": row.images_at_once}.items() if v is not None}

    def recorded_session_options(self, name: str) -> dict:
        """ONNX Runtime's session options as the record ran them (one not recorded yet: not in it)."""
        row = self.recorded[name]
        fields = {"enable_cpu_mem_arena": row.cpu_mem_arena, "enable_mem_pattern": row.mem_pattern,
                  "allow_spinning": row.allow_spinning}
        return {k: v for k, v in fields.items() if v is not None}

    def named_at(self, rev: str, target_source: Path | None, workdir: Path) -> tuple:
        """The named variants the target's file declared at `rev`; () where that file is not in this repository then."""
        import tomllib

        from harness.variants.named import named_from_tables

        if self.root is None or target_source is None or not rev:
            return ()
        try:
            relative = Path(target_source).resolve().relative_to(self.root)
        except ValueError:
            return ()  # a target outside the repository (a built-in one, installed): its history is not known here
        tree = self._tree(rev, Path(workdir))
        if tree is None or not (tree / relative).is_file():
            return ()
        try:
            doc = tomllib.loads((tree / relative).read_text(encoding="utf-8-sig"))
            return named_from_tables(doc.get("variant", {}), f"{relative} at {rev[:12]}")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, HarnessError):
            return ()

    def partner(self, name: str, workdir: Path, rev: str | None = None) -> Partner:
        """`name` as the suite had it at `rev` (default: --against, else the record's commit), renamed name@rev."""
        rev = rev or self.against or (self.recorded[name].git_commit or "").removesuffix("-dirty")
        if self.root is None:
            return Partner(None, rev, f"{self.suite_path} is not in a git checkout: no A/B, the record's figures are used")
        if not rev:
            return Partner(None, rev, "the record names no commit: no A/B, the record's figures are used")
        tree = self._tree(rev, Path(workdir))
        if tree is None:
            return Partner(None, rev, f"commit {rev[:12]} cannot be read from {self.root}: no A/B, the record's figures are used")
        relative = self.suite_path.resolve().relative_to(self.root)
        if not (tree / relative).is_file():
            return Partner(None, rev, f"{relative} did not exist at {rev[:12]}: nothing to compare with")
        spec = find_spec(load_suite(tree / relative), name)
        if spec is None:
            return Partner(None, rev, f"model {name} was not in the suite at {rev[:12]}: nothing to compare with")
        return Partner(dataclasses.replace(spec, name=f"{name}@{rev[:8]}"), rev)

    def variant_by_recorded_harness(self, name: str, variant: str, rev: str, workdir: Path, machine: str) -> Path | None:
        """`variant` of `name` made by the harness code of commit `rev` itself; None when that code cannot make it."""
        tree = self._tree(rev, Path(workdir))
        if tree is None:
            return None
        made = made_by_revision(tree, rev, name, self.suite_path.resolve().relative_to(self.root), variant, machine)
        return made if isinstance(made, Path) else None

    def _tree(self, rev: str, workdir: Path) -> Path | None:
        return tree_at(self.root, rev, workdir)


def holds_harness(tree: Path) -> bool:
    """Whether a revision's tree is the harness's own repository (its files are then made by its own harness)."""
    return (tree / "harness" / "cli" / "__init__.py").is_file() and (tree / "pyproject.toml").is_file()


def made_by_revision(tree: Path, rev: str, name: str, relative: Path, variant: str, machine: str) -> Path | str:
    """The file `variant` (fp32: the export) of `name` as the harness code of commit `rev` makes it (its own `harness
    export` or `harness quantize`, in a child process on this machine, cached per commit and machine); or why not."""
    from harness.cache import cached_entry
    from harness.export.exporters import SOURCE_LOCATION_KEYS, strip_source_locations

    parts = {"rev": rev, "model": name, "variant": variant, "suite": relative.as_posix(), "machine": machine,
             "stripped": list(SOURCE_LOCATION_KEYS)}

    def build(folder: Path) -> dict:
        out = folder / "model.onnx"
        command = ["export", name] if variant == "fp32" else ["quantize", name, "--method", variant]
        script = "import sys; sys.path.insert(0, sys.argv[1]); from harness.cli import main; sys.exit(main(sys.argv[2:]))"
        proc = subprocess.run([sys.executable, "-c", script, str(tree), *command, "--suite", str(relative), "--out",
                               str(out)], cwd=tree, capture_output=True, text=True, timeout=1800,
                              env={**os.environ, "PYTHONPATH": str(tree)})
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError((proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1])
        # Older commits left torch's stack traces (this tree's paths) in the file; today's exports do not.
        strip_source_locations(out)
        return {"rev": rev}

    try:
        return cached_entry("revision-files", parts, build).folder / "model.onnx"
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return str(e) or type(e).__name__


def machine_tag(machine) -> str:
    """What a file made on this machine depends on besides its inputs (int8 calibration differs by CPU)."""
    return f"{machine.cpu_model} {machine.cpu_isa} onnxruntime {machine.ort_version}"


def tree_at(root: Path, rev: str, workdir: Path) -> Path | None:
    """The files of commit `rev` of the repository at `root`, unpacked once under `workdir`; None if unreadable."""
    tree = workdir / f"rev-{rev[:12]}"
    if tree.is_dir():
        return tree
    try:
        proc = subprocess.run(["git", "archive", "--format=tar", rev], cwd=root, capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
        archive.extractall(tree, filter="data")
    return tree

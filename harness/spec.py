"""Model specs and suites: what a bench run covers, read from TOML into frozen dataclasses."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.files import check_name

ASSETS_DIR = Path(__file__).parent / "assets"
DEFAULT_SUITE = ASSETS_DIR / "default_suite.toml"
DEFAULT_IGNORE_INDEX = 255


@dataclass(frozen=True)
class ModelSpec:
    """One model to measure: a registry architecture, an importable factory (+ checkpoint), or an ONNX file."""

    name: str
    num_classes: int
    input_hw: tuple[int, int]
    arch: str | None = None
    factory: str | None = None  # "package.module:function", called with model_kwargs
    search_path: Path | None = None  # where the factory's module may live (the suite's folder)
    checkpoint: Path | None = None
    onnx: Path | None = None
    allow_pickle: bool = False
    model_kwargs: dict = field(default_factory=dict)
    task: str = "segmentation"  # or "classification": what the outputs mean, which quality is measured
    output: str = "out"  # a factory model whose forward returns a dict: the key holding the logits
    module: object = field(default=None, compare=False, repr=False)  # a torch.nn.Module in memory (harness.bench)

    def __post_init__(self):
        from harness.tasks import get_task

        try:
            get_task(self.task)
        except HarnessError as e:
            raise HarnessError(f"model '{self.name}': {e}") from None
        sources = [k for k in ("arch", "factory", "onnx", "module") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise HarnessError(f"model '{self.name}': give exactly one of arch = \"<registry name>\", "
                               f"factory = \"package.module:function\" or onnx = \"file.onnx\" (or, from Python, a module)")
        if self.factory is not None and (":" not in self.factory or self.factory.startswith(":") or self.factory.endswith(":")):
            raise HarnessError(f"model '{self.name}': factory = \"{self.factory}\" is not \"package.module:function\"")
        if self.num_classes < 1:
            raise HarnessError(f"model '{self.name}': num_classes must be at least 1, got {self.num_classes}")
        if len(self.input_hw) != 2 or min(self.input_hw) < 1:
            raise HarnessError(f"model '{self.name}': input_size must be [height, width] in pixels, got {list(self.input_hw)}")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise HarnessError(f"model '{self.name}': checkpoint {self.checkpoint} does not exist")
        if self.onnx is not None and not Path(self.onnx).is_file():
            raise HarnessError(f"model '{self.name}': ONNX file {self.onnx} does not exist")


@dataclass(frozen=True)
class Suite:
    """The model specs a bench run covers, plus the evaluation data they share."""

    path: Path
    models: tuple[ModelSpec, ...]
    data_dir: Path | None
    ignore_index: int
    task: str = "segmentation"
    calibration_dir: Path | None = None
    calibration_method: str | None = None  # None: harness.variants.quantize's default
    calibration_images: int | None = None


_MODEL_KEYS = {"name", "arch", "factory", "num_classes", "input_size", "checkpoint", "onnx", "allow_pickle", "kwargs",
               "output"}
_DATA_KEYS = {"dir", "ignore_index", "task"}
_CALIBRATION_KEYS = {"dir", "method", "images"}


def _check_keys(where: str, table: dict, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise HarnessError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")


def load_suite(path: str | Path) -> Suite:
    """The suite, its paths resolved against the suite's folder once, so no later step depends on the working directory."""
    path = Path(path).absolute()
    if not path.is_file():
        raise HarnessError(f"suite file {path} does not exist: pass --suite a TOML file with [[model]] tables")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # -sig: the BOM Windows editors write is not TOML
    except tomllib.TOMLDecodeError as e:
        raise HarnessError(f"suite file {path} is not valid TOML: {e}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise HarnessError(f"suite file {path} cannot be read ({type(e).__name__}); pass a UTF-8 TOML file") from e
    _check_keys(str(path), doc, {"data", "calibration", "model"})
    data = doc.get("data", {})
    _check_keys(f"{path} [data]", data, _DATA_KEYS)
    calibration = doc.get("calibration", {})
    _check_keys(f"{path} [calibration]", calibration, _CALIBRATION_KEYS)
    base = path.parent
    task = str(data.get("task", "segmentation"))
    models = []
    for i, table in enumerate(doc.get("model", [])):
        where = f"{path} [[model]] #{i + 1}"
        _check_keys(where, table, _MODEL_KEYS)
        missing = [k for k in ("name", "num_classes", "input_size") if k not in table]
        if missing:
            raise HarnessError(f"{where}: missing key '{missing[0]}'")
        models.append(ModelSpec(
            name=check_name("model", str(table["name"]), where),
            arch=table.get("arch"),
            factory=table.get("factory"),
            search_path=base,
            num_classes=int(table["num_classes"]),
            input_hw=tuple(int(v) for v in table["input_size"]),
            checkpoint=base / table["checkpoint"] if "checkpoint" in table else None,
            onnx=base / table["onnx"] if "onnx" in table else None,
            allow_pickle=bool(table.get("allow_pickle", False)),
            model_kwargs=dict(table.get("kwargs", {})),
            output=str(table.get("output", "out")),
            task=task,
        ))
    if not models:
        raise HarnessError(f"suite file {path} lists no models: add at least one [[model]] table")
    names = [m.name for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise HarnessError(f"suite file {path}: model name '{dupes[0]}' appears twice; names label result rows")
    return Suite(
        path=path,
        models=tuple(models),
        data_dir=base / data["dir"] if "dir" in data else None,
        ignore_index=int(data.get("ignore_index", DEFAULT_IGNORE_INDEX)),
        task=task,
        calibration_dir=base / calibration["dir"] if "dir" in calibration else None,
        calibration_method=str(calibration["method"]) if "method" in calibration else None,
        calibration_images=int(calibration["images"]) if "images" in calibration else None,
    )


def find_spec(suite: Suite, name: str) -> ModelSpec | None:
    return next((m for m in suite.models if m.name == name), None)

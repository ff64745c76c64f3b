"""The package as a whole: its top-level entry points, a cheap import, declared dependencies."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import metalearn_nlp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "metalearn_nlp"


def _third_party_imports() -> dict[str, list[str]]:
    """``{top-level module: [files importing it]}`` for every absolute import in the package."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("metalearn_nlp", "__future__"):
                    found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = [re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0] for spec in project["dependencies"]]
    return {name.lower().replace("_", "-") for name in names}


def _optional() -> dict[str, set[str]]:
    """``{extra: declared names}`` of ``[project.optional-dependencies]``."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    return {extra: {re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs}
            for extra, specs in extras.items()}


def _top_level_imports(path: Path) -> set[str]:
    """Top-level modules imported when ``path`` is imported (not inside a function)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_of_the_package_is_a_declared_dependency():
    """A required dependency, or an extra's (``peft``) imported only inside the function that needs it."""
    declared, optional = _declared(), set().union(*_optional().values())
    distributions = importlib.metadata.packages_distributions()
    missing, eager = {}, {}
    for module, files in _third_party_imports().items():
        names = {name.lower().replace("_", "-") for name in distributions.get(module, [module])}
        if names & declared:
            continue
        if not names & optional:
            missing[module] = sorted(set(files))
        elif any(module in _top_level_imports(ROOT / f) for f in files):
            eager[module] = sorted(f for f in set(files) if module in _top_level_imports(ROOT / f))
    assert not missing, f"imported but not in pyproject.toml [project] dependencies or an extra: {missing}"
    assert not eager, f"an optional dependency imported at module level (import it where it is used): {eager}"


ENTRY_POINTS = {
    "load_encoder": "metalearn_nlp.encoders",
    "load_corpus": "metalearn_nlp.data",
    "get_learner": "metalearn_nlp.learners",
    "LEARNERS": "metalearn_nlp.learners",
    "meta_train": "metalearn_nlp.training",
    "evaluate": "metalearn_nlp.evaluation",
    "summarize": "metalearn_nlp.evaluation",
    "Episode": "metalearn_nlp.data",
    "TaggedSentence": "metalearn_nlp.data",
    "FewNERDSampler": "metalearn_nlp.data",
    "CrossDatasetSampler": "metalearn_nlp.data",
    "load_episodes": "metalearn_nlp.data",
    "save_episodes": "metalearn_nlp.data",
    "train_or_load": "metalearn_nlp.notebook",
}


@pytest.mark.parametrize(("name", "module"), sorted(ENTRY_POINTS.items()))
def test_the_main_entry_points_are_exported_at_the_top(name: str, module: str):
    assert name in metalearn_nlp.__all__ and name in dir(metalearn_nlp)
    assert getattr(metalearn_nlp, name) is getattr(importlib.import_module(module), name)


def test_every_name_in_all_resolves_and_unknown_names_raise_attribute_error():
    for name in metalearn_nlp.__all__:
        assert getattr(metalearn_nlp, name) is not None
    with pytest.raises(AttributeError, match="module 'metalearn_nlp' has no attribute 'nothing_here'"):
        metalearn_nlp.nothing_here  # noqa: B018


def test_importing_the_package_stays_cheap():
    # the entry points load on first use: a bare import pulls in no deep-learning library
    code = "import sys, metalearn_nlp; print([m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_hub_helpers_docstring_examples():
    import doctest

    from metalearn_nlp import _hub

    assert doctest.testmod(_hub).failed == 0

"""The public surface is checked, not hoped for: each package's ``__all__`` is a sorted literal that
lists every name the package exports, every listed name resolves, and every name the README,
examples and adapters import from a package is in its ``__all__`` (a star import or a type checker
sees exactly the names users are told to import). The adapters ship ``py.typed``."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"cachemux": ROOT / "core", "langchain_cachemux": ROOT / "langchain_cachemux",
            "llamaindex_cachemux": ROOT / "llamaindex_cachemux"}
# where users and the adapters learn the surface: code, docstrings and README blocks alike
SOURCES = [ROOT / "README.md", *sorted((ROOT / "examples").glob("*.py")),
           *sorted((ROOT / "langchain_cachemux").glob("*.py")), *sorted((ROOT / "llamaindex_cachemux").glob("*.py"))]


def _written_all(package: str) -> list[str]:
    """``__all__`` as written in the package's ``__init__.py``: it must be a literal list of strings."""
    tree = ast.parse((PACKAGES[package] / "__init__.py").read_text(encoding="utf-8"))
    values = [node.value for node in tree.body if isinstance(node, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)]
    assert len(values) == 1, f"{package}/__init__.py assigns __all__ {len(values)} times"
    assert isinstance(values[0], ast.List), f"{package}.__all__ is computed, not a literal list"
    names = [elt.value for elt in values[0].elts if isinstance(elt, ast.Constant) and isinstance(elt.value, str)]
    assert len(names) == len(values[0].elts), f"{package}.__all__ holds something other than strings"
    return names


def _is_submodule(package: str, name: str) -> bool:
    return importlib.util.find_spec(f"{package}.{name}") is not None


def _imported_names(package: str) -> dict[str, set[str]]:
    """Each name imported from ``package`` itself (``from package import a, b`` or ``package.a``),
    with the files that import it; submodules (``from cachemux import paths``) are not names."""
    pattern = re.compile(rf"from {package} import (\([^)]*\)|[^\n]*)|\b{package}\.([A-Za-z_]\w*)")
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        for listed, attribute in pattern.findall(path.read_text(encoding="utf-8")):
            listed = re.sub(r"#[^\n]*", "", listed).strip("() \n")
            for part in [attribute] if attribute else listed.split(","):
                name = part.split(" as ")[0].strip()
                if name and not name.startswith("_") and not _is_submodule(package, name):
                    found.setdefault(name, set()).add(path.name)
    return found


def _defined_names(package: str) -> set[str]:
    """The public names ``__init__.py`` binds from the project (not ``typing`` helpers), and
    cachemux's lazily loaded ones."""
    module = importlib.import_module(package)
    tree = ast.parse((PACKAGES[package] / "__init__.py").read_text(encoding="utf-8"))
    names = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
             and (node.module or "").split(".")[0] in PACKAGES for alias in node.names}
    names |= set(getattr(module, "_WHERE", {}))
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_all_is_a_sorted_literal(package):
    written = _written_all(package)
    assert written == sorted(written), f"{package}.__all__ is not sorted: {written}"
    assert len(set(written)) == len(written), f"{package}.__all__ repeats a name: {written}"
    assert importlib.import_module(package).__all__ == written


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_all_lists_every_exported_name_and_each_resolves(package):
    module = importlib.import_module(package)
    missing = _defined_names(package) - set(module.__all__)
    assert not missing, f"{package} exports {sorted(missing)} without listing them in __all__"
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name} is listed in __all__ but does not resolve"
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)  # noqa: S102 - the star import users may write
    assert set(module.__all__) <= set(namespace)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_documented_import_is_in_all(package):
    imported = _imported_names(package)
    assert imported, f"no imports from {package} found: the scan is broken"
    module = importlib.import_module(package)
    unlisted = {name: sorted(where) for name, where in imported.items() if name not in module.__all__}
    assert not unlisted, f"imported from {package} but not in its __all__: {unlisted}"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_package_ships_py_typed(package):
    assert (PACKAGES[package] / "py.typed").is_file()
    data = re.search(r"\[tool\.setuptools\.package-data\]\n(.*?)\n\n", (ROOT / "pyproject.toml").read_text(), re.S)
    assert data and re.search(rf'^{package} = \[[^\]]*"py\.typed"', data.group(1), re.M), \
        f"py.typed of {package} is not declared as package data"

"""The test suite's own layout: no test module imports another (shared code lives in tests/helpers/
and fixtures in conftest.py files), and every test file lives in a folder that gives it its markers."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import FOLDER_MARKERS, GROUP_PER_TEST, xdist_group
from tests.helpers.server import ROOT

TESTS = ROOT / "tests"


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports (module level or inside functions), relative ones made absolute."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def test_no_test_module_imports_another():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for line, name in _imported_modules(path)
        if name.startswith("tests.") and not name.startswith(("tests.helpers.", "tests.conftest."))
    ]
    assert not offenders, "shared code belongs in tests/helpers/ or a conftest.py:\n" + "\n".join(offenders)


def test_every_test_file_lives_in_a_folder_with_markers():
    misplaced = [
        str(path.relative_to(ROOT))
        for path in sorted(TESTS.rglob("test_*.py"))
        if len(path.relative_to(TESTS).parts) < 2 or path.relative_to(TESTS).parts[0] not in FOLDER_MARKERS
    ]
    assert not misplaced, f"move these into one of tests/{{{','.join(FOLDER_MARKERS)}}}/: {misplaced}"
    assert all((TESTS / folder / "__init__.py").is_file() for folder in FOLDER_MARKERS)


def test_every_container_test_lives_in_one_module():
    """tests/conftest.py keeps a module's tests on one pytest-xdist worker, and that is what keeps two
    image builds from running at once: a second module of container tests would run beside the first."""
    modules = sorted(
        str(path.relative_to(ROOT))
        for path in TESTS.rglob("test_*.py")
        if path != Path(__file__) and "mark.container" in path.read_text(encoding="utf-8")
    )
    assert modules == ["tests/deploy/test_docker_podman.py"], modules


def test_xdist_groups_are_modules_except_where_split_per_test():
    """What `--dist loadgroup` keeps on one worker, from the ids the scheduler sees."""
    assert xdist_group("tests/server/test_exports.py::test_a[x-1]") == "tests/server/test_exports.py"
    assert xdist_group("tests/deploy/test_docker_podman.py::test_b") == "tests/deploy/test_docker_podman.py"
    pool = "tests/cluster/test_ray_pool.py"
    assert pool in GROUP_PER_TEST and all((ROOT / module).is_file() for module in GROUP_PER_TEST)
    assert xdist_group(f"{pool}::test_c[morph-4]") == xdist_group(f"{pool}::test_c[wan-3]") == f"{pool}::test_c"
    assert xdist_group(f"{pool}::test_d") == f"{pool}::test_d"
    # A group name that pytest-xdist appends to the id (with pytest < 9) does not change the group.
    assert xdist_group("tests/unit/test_api_docs.py::test_e[a@b]@tests/unit") == "tests/unit/test_api_docs.py"

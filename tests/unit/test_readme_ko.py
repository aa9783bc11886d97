"""README.ko.md gives the same commands as README.md: the fenced shell blocks (the set-up and test
commands) are identical and in the same order, every command README.md names inline is in the
Korean one too, and every command the Korean one names is one the English README or
docs/deploy.md gives. Each README links to the other."""

from __future__ import annotations

import re

from tests.helpers.server import ROOT

EN, KO, DEPLOY = ROOT / "README.md", ROOT / "README.ko.md", ROOT / "docs" / "deploy.md"

FENCE = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")
# An inline code span is a command when it starts with one of the programs a user types.
PROGRAMS = ("bash ", "sh ", ".venv/bin/", "python ", "python -m", "uvicorn ", "docker ", "cp ", "npm ", "git ", "ray ")


def fenced(text: str) -> list[str]:
    return [block.strip() for block in FENCE.findall(text)]


def command_lines(text: str) -> set[str]:
    """Every line of every fenced shell block, without its trailing comment."""
    lines = set()
    for block in fenced(text):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.add(line)
    return lines


def inline_commands(text: str) -> set[str]:
    outside = FENCE.sub("", text)
    return {span.strip() for span in INLINE.findall(outside) if span.strip().startswith(PROGRAMS)}


def test_both_readmes_fence_the_same_commands_in_the_same_order():
    en, ko = fenced(EN.read_text(encoding="utf-8")), fenced(KO.read_text(encoding="utf-8"))
    assert en, "README.md has no fenced shell command"
    assert ko == en, f"README.ko.md's commands differ from README.md's:\n{ko}\n!=\n{en}"


def test_every_inline_command_of_either_is_one_the_studio_documents():
    en_text, ko_text = EN.read_text(encoding="utf-8"), KO.read_text(encoding="utf-8")
    deploy = DEPLOY.read_text(encoding="utf-8")
    en_commands = inline_commands(en_text) | command_lines(en_text)
    ko_commands = inline_commands(ko_text) | command_lines(ko_text)
    missing = {c for c in inline_commands(en_text) if c not in ko_commands}
    assert not missing, f"README.md names commands README.ko.md does not: {sorted(missing)}"
    known = en_commands | inline_commands(deploy) | command_lines(deploy)
    unknown = inline_commands(ko_text) - known
    assert not unknown, f"README.ko.md names commands neither README.md nor docs/deploy.md gives: {sorted(unknown)}"


def test_each_readme_links_to_the_other():
    en_top = EN.read_text(encoding="utf-8").splitlines()[:5]
    ko_top = KO.read_text(encoding="utf-8").splitlines()[:5]
    assert any("](README.ko.md)" in line for line in en_top), "README.md's top does not link README.ko.md"
    assert any("](README.md)" in line for line in ko_top), "README.ko.md's top does not link README.md"


def test_the_korean_readme_has_what_a_user_needs():
    ko = KO.read_text(encoding="utf-8")
    for heading in (
        "## 설치와 실행",
        "## 실행하는 세 가지 방법",
        "## 엔진과 라이선스",
        "## GPU별 성능 가이드",
        "## 문제 해결",
    ):
        assert heading in ko, heading
    # The GPU table has the English README's rows (one per GPU).
    en_rows = [r for r in EN.read_text(encoding="utf-8").splitlines() if r.startswith("| ") and "GB" in r]
    for gpu in ("T4", "6 GB", "8 GB", "12 GB", "L4", "A10G", "A100 40 GB", "H100 / H200"):
        assert any(r.startswith(f"| {gpu}") for r in en_rows), gpu
        assert re.search(rf"^\| {re.escape(gpu)}", ko, re.M), f"README.ko.md's GPU table misses {gpu}"
    # The licence fact is stated as what the licence text says, with the three places it names.
    assert "Tencent Hunyuan Community License" in ko and "대한민국" in ko and "영국" in ko and "유럽연합" in ko
    assert "법률 자문이" in ko

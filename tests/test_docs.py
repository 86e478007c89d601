"""The documentation a reader follows resolves: cited method-note sections exist, and the
README's relative links point at files inside the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHOD = ROOT / "docs" / "reference" / "method.md"


def _method_sections() -> set[str]:
    return set(re.findall(r"^## (\d+)\.", METHOD.read_text(), flags=re.M))


def test_every_cited_method_section_exists():
    sections = _method_sections()
    assert sections, f"no numbered sections found in {METHOD}"
    missing = []
    for path in sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "tests").rglob("*.py")):
        for num in re.findall(r"method note §(\d+)", path.read_text()):
            if num not in sections:
                missing.append(f"{path.relative_to(ROOT)}: §{num}")
    assert not missing, f"cited sections absent from {METHOD.name}: {missing}"


def test_baselines_note_is_in_the_repository():
    cited = [p for p in (ROOT / "src").rglob("*.py") if "baselines note" in p.read_text()]
    assert cited, "no module cites the baselines note; drop this test or the file"
    assert (ROOT / "docs" / "reference" / "baselines.md").is_file()


def test_readme_relative_links_resolve_inside_the_repository():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t) and not t.startswith("mailto:")]
    assert local, "README has no relative links"
    bad = []
    for target in local:
        path = (ROOT / target).resolve()
        if ROOT not in path.parents and path != ROOT:
            bad.append(f"{target} (outside the repository)")
        elif not path.exists():
            bad.append(f"{target} (missing)")
    assert not bad, f"README links that do not resolve: {bad}"

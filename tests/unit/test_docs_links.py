"""The documents hold together: every link and every `FILE.md#anchor` a document, preset header or bench comment
cites resolves to a file and a heading that exist; BENCHMARKS.md and README.md stay within their sizes; the
layout map in docs/design.md names the folders and modules the tree has. Plain file reads: no Ray, no torch."""

import ast
import configparser
import glob
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Markdown: links resolve from the file's own folder, as GitHub renders them.
MARKDOWN = ("README.md", "BENCHMARKS.md", "docs/*.md", "bench/results/*.md", "examples/**/*.md")
# Everything else cites paths from the repository root (a preset header's `BENCHMARKS.md#...`).
PLAIN = (
    "common/presets/*.yaml",
    "common/presets/families/*.yaml",
    "cluster/deploy/*.yaml",
    "bench/*.py",
    "common/**/*.py",
    "actors/**/*.py",
    "learner/**/*.py",
    "cluster/**/*.py",
    "ray_a3c/*.py",
    "Makefile",
    "Dockerfile",
)
MAX_BYTES = {  # file -> (its limit, where its surplus goes)
    "BENCHMARKS.md": (40_000, "older runs, screens and models to dated files in bench/results/"),
    "README.md": (15_000, "detail to docs/guide.md"),
}
SUMMARY_MAX_BYTES = 3_000  # BENCHMARKS.md's "## Summary": one line per bench
PACKAGE_FOLDERS = ("common", "actors", "learner", "cluster")  # every package and module of these is in the layout map
MAPPED_FOLDERS = {"common", "actors", "learner", "cluster", "bench", "tests", "docs"}

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?[^)]*\)")
FILE_ANCHOR = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.md)#([\w-]+)")
RESULTS_FILE = re.compile(r"(?<![\w./-])(bench/results/[\w.-]+\.md)")
EXTERNAL = ("http://", "https://", "mailto:")


def read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def files(patterns) -> list[str]:
    found = {p for pattern in patterns for p in glob.glob(os.path.join(ROOT, pattern), recursive=True)}
    return sorted(p for p in found if os.path.isfile(p))


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.split("\n"), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lowercased, punctuation but '-' and '_' dropped,
    spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link reads as its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a markdown text defines: its headings' slugs (a repeated one gets -1, -2, ...) and HTML ids."""
    found, seen = set(), {}
    for _, line in prose_lines(text):
        found |= set(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            base = slug(match[2])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def references(path: str):
    """(line number, target) for every link of a markdown file, or every `X.md#anchor` and bench/results/ path
    cited in any other file."""
    text = read(path)
    if path.endswith(".md"):
        for number, line in prose_lines(text):
            for target in LINK.findall(line):
                if not target.startswith(EXTERNAL):
                    yield number, target
        return
    for number, line in enumerate(text.split("\n"), 1):
        for file, anchor in FILE_ANCHOR.findall(line):
            yield number, f"{file}#{anchor}"
        for file in RESULTS_FILE.findall(line):
            yield number, file


def broken(path: str, target: str, root: str = ROOT) -> str | None:
    """Why `target`, cited in `path`, does not resolve; None when it does."""
    file, _, anchor = target.partition("#")
    base = os.path.dirname(path) if path.endswith(".md") else root
    resolved = os.path.normpath(os.path.join(base, file)) if file else path
    if not resolved.startswith(root + os.sep) or not os.path.exists(resolved):
        return "no such file"
    if anchor and resolved.endswith(".md") and anchor not in anchors(read(resolved)):
        return f"no heading with anchor #{anchor} in {os.path.relpath(resolved, root)}"
    return None


def unresolved(paths, root: str = ROOT) -> list[str]:
    return [
        f"{os.path.relpath(path, root)}:{number}: {target} ({why})"
        for path in paths
        for number, target in references(path)
        if (why := broken(path, target, root))
    ]


def test_slug_follows_githubs_rule():
    assert slug("Pendulum-v1: ray-a3c vs SB3 A2C and PPO, time to -250 (2026-11-23)") == (
        "pendulum-v1-ray-a3c-vs-sb3-a2c-and-ppo-time-to--250-2026-11-23"
    )
    assert (
        slug("Seeded learning runs (`make test-slow`, 2026-11-21)") == "seeded-learning-runs-make-test-slow-2026-11-21"
    )
    assert slug("Sharded parameter server (`learner.num_shards`)") == "sharded-parameter-server-learnernum_shards"
    assert slug("ViZDoom basic: the Doom notebook's CNN + LSTM") == "vizdoom-basic-the-doom-notebooks-cnn--lstm"
    assert anchors("# Notes\n```\n# not a heading\n```\n## Notes\n## Notes\n") == {"notes", "notes-1", "notes-2"}


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    root = str(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "B.md").write_text("# B\n\n## A run (2026-12-06)\n")
    (tmp_path / "docs" / "a.md").write_text(
        "[ok](../B.md#a-run-2026-12-06) [gone](../B.md#a-run-2026-11-01) [missing](../C.md) [self](#a)\n# A\n"
    )
    (tmp_path / "p.yaml").write_text("# figures: B.md#a-run-2026-12-06, B.md#nope, bench/results/x.md\n")
    paths = [str(tmp_path / "docs" / "a.md"), str(tmp_path / "p.yaml")]
    problems = unresolved(paths, root)
    assert len(problems) == 4, problems
    assert any("../B.md#a-run-2026-11-01 (no heading" in p for p in problems)
    assert any("../C.md (no such file)" in p for p in problems)
    assert any("B.md#nope" in p for p in problems) and any("bench/results/x.md" in p for p in problems)


def test_every_link_and_anchor_resolves():
    paths = files(MARKDOWN) + files(PLAIN)
    assert len(files(("docs/*.md",))) >= 4 and len(files(("common/presets/*.yaml",))) >= 10
    assert sum(1 for path in paths for _ in references(path)) > 50  # the scan finds the links it checks
    assert unresolved(paths) == []


def test_benchmarks_and_readme_stay_small():
    for name, (limit, surplus) in MAX_BYTES.items():
        size = os.path.getsize(os.path.join(ROOT, name))
        assert size <= limit, f"{name} is {size} bytes (at most {limit}): move {surplus}"
    summary = read(os.path.join(ROOT, "BENCHMARKS.md")).split("\n## Summary\n", 1)[1].split("\n## ", 1)[0]
    assert len(summary.encode()) <= SUMMARY_MAX_BYTES, "BENCHMARKS.md's Summary: one short line per bench"


def test_every_results_file_is_linked_from_benchmarks():
    benchmarks = read(os.path.join(ROOT, "BENCHMARKS.md"))
    results = files(("bench/results/*.md",))
    assert results
    unlinked = [os.path.relpath(p, ROOT) for p in results if f"({os.path.relpath(p, ROOT)}" not in benchmarks]
    assert unlinked == []


def layout_map() -> dict[str, str]:
    """design.md's "## Layout" code block: folder -> what its lines say of it. A top-level folder's entry starts
    at the line's start (`common/    ...`), a subpackage's two spaces in, under its folder's (`  env/   ...` is
    `common/env`); the lines after an entry, indented further, continue it."""
    section = read(os.path.join(ROOT, "docs", "design.md")).split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    entries, top, folder = {}, None, None
    for line in section.split("```")[1].split("\n")[1:]:
        match = re.match(r"( {2})?([\w.-]+)/\s+(.*)", line)
        if match and (top or not match[1]):
            folder = f"{top}/{match[2]}" if match[1] else match[2]
            top = top if match[1] else folder
            entries[folder] = match[3]
        elif folder and line.strip():
            entries[folder] += " " + line.strip()
    return entries


def package_modules() -> dict[str, list[str]]:
    """Every package under PACKAGE_FOLDERS (a folder with an `__init__.py`, from the root) -> its modules' names."""
    found = {}
    for top in PACKAGE_FOLDERS:
        for directory, _, names in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" in names:
                modules = [n[:-3] for n in names if n.endswith(".py") and n != "__init__.py"]
                found[os.path.relpath(directory, ROOT)] = sorted(modules)
    return found


def tracked_top_folders() -> set[str]:
    try:
        listing = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # an unpacked sdist: the folders on disk
        return {d for d in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, d, "__init__.py"))}
    return {path.split("/", 1)[0] for path in listing.split("\n") if "/" in path and not path.startswith(".")}


def named_paths(folder: str, text: str) -> list[str]:
    """The paths an entry names that do not exist: `a/b.py`, `cluster/deploy/`, `guide.md` (from the root,
    else from the entry's folder), snake_case module names outside backticks, `ray_a3c.<sub>` packages."""
    package_dir = configparser.ConfigParser()
    package_dir.read(os.path.join(ROOT, "setup.cfg"))
    subpackages = {line.split("=")[0].strip() for line in package_dir["options"]["package_dir"].split("\n")}
    missing = []
    for path in re.findall(r"(?<![\w.])((?:[\w.-]+/)+[\w.-]*|[\w-]+\.(?:py|md|yaml|json))", text):
        if not any(os.path.exists(os.path.join(ROOT, base, path)) for base in ("", folder)):
            missing.append(path)
    prose = re.sub(r"`[^`]*`", "", text)
    for name in set(re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", prose)) - {"ray_a3c"}:
        if not any(os.path.exists(os.path.join(ROOT, folder, name + ext)) for ext in (".py", "")):
            missing.append(f"{folder}/{name}")
    missing += [sub for sub in re.findall(r"\bray_a3c\.\w+", prose) if sub not in subpackages]
    return missing


def test_layout_map_names_what_exists():
    entries = layout_map()
    assert {folder for folder in entries if not os.path.isdir(os.path.join(ROOT, folder))} == set()
    assert [path for folder, text in entries.items() for path in named_paths(folder, text)] == []


def test_layout_map_covers_every_folder_and_module():
    entries = layout_map()
    assert MAPPED_FOLDERS | tracked_top_folders() <= set(entries)
    packages = package_modules()
    assert {"common", "cluster", "common/presets"} <= set(packages)  # the walk finds the packages it checks
    assert [package for package in packages if package not in entries] == [], "give each package an entry"
    unnamed = [
        f"{package}/{module}.py"
        for package, modules in packages.items()
        for module in modules
        if not re.search(rf"\b{module}\b", entries[package], re.IGNORECASE)
    ]
    assert unnamed == [], "name each module in docs/design.md's layout map, in its own package's entry"


def test_every_package_init_says_its_purpose_alone():
    """An `__init__.py` is one docstring: importing a package (the CLI's first import, a worker's) runs
    nothing and loads neither torch nor Ray; what the package holds is said in one line."""
    for package in package_modules():
        tree = ast.parse(read(os.path.join(ROOT, package, "__init__.py")))
        body = tree.body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), package
        assert isinstance(body[0].value.value, str) and "\n" not in body[0].value.value.strip(), package


def test_setup_cfg_installs_every_package():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    listed = {line.strip() for line in config["options"]["packages"].split("\n") if line.strip()}
    expected = {"ray_a3c"} | {"ray_a3c." + package.replace("/", ".") for package in package_modules()}
    assert listed == expected

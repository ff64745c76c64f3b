"""The rendered book, in a real browser, offline.

The HTML book is opened page by page from disk (``file://``) in headless Chromium, driven by
Playwright, with every request that is not ``file:`` (or ``data:``) refused. Each page must show:

* no refused (network) request, no failed file request, no console error, no uncaught exception;
* math typeset by MathJax (every ``.math`` element has MathJax output, no TeX error, and no
  ``$$``, ``\\(``, ``\\[``, ``\\begin{`` or ``$...\\cmd...$`` left in the visible text outside code);
* no unrendered MyST role (``{glue:...}``, ``{cite}``...) in the visible text;
* every ``<img>`` loaded, with a non-zero natural size;
* every mermaid diagram drawn (an ``<svg>`` in the ``.mermaid`` element, not mermaid's error chart);
* every link inside the book resolving: the target file exists and its ``#anchor`` is an id there.

A screenshot of each page goes to ``_build/screenshots/`` (``BROWSER_TEST_SCREENSHOTS=DIR`` to
change it). Sphinx's warnings from the build are checked too.

The HTML comes from a cheap build: ``jupyter-book build`` into a temporary folder with notebook
execution off (the notebooks' stored outputs are rendered), about 20 s. ``BOOK_HTML=_build/html``
checks an existing build instead (the full one of ``make book``), skipping the build-warning test.

Needs Chromium (``/usr/bin/chromium``, from Debian's ``chromium``; ``CHROMIUM=PATH`` for another)
and the Python package ``playwright`` (the ``test`` extra); without either the tests skip, naming
what is missing. Never run ``playwright install``: it downloads a browser, which fails offline.
"""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# KNOWN DEFECTS: problems on today's pages that are real but not yet fixed in the notebooks.
# Each entry is (page, check, substring of the problem, reason). A problem is forgiven only on
# that page ("*": every page), for that check, when its text contains the substring. Remove an
# entry once the page is fixed; one that matches nothing is reported as a warning in the summary.
# Checks: "build", "request", "console", "math", "text", "image", "mermaid", "link".
# ---------------------------------------------------------------------------------------------
KNOWN_DEFECTS: list[tuple[str, str, str, str]] = [
    # The toolchain, not the chapters: harmless, on every page.
    ("*", "console", "Identifier 'THEBE_JS_URL' has already been declared",
     "jupyter-book 1.0.4 puts sphinx-thebe's `const THEBE_JS_URL = ...` script in <head> twice; "
     "the second copy is a SyntaxError, the first has already set everything"),
    ("*", "console", "Got invalid theme mode: . Resetting to auto.",
     "pydata-sphinx-theme 0.17 logs this on a reader's first visit (empty localStorage), then "
     "stores 'auto'; every page here is a first visit"),
]

MATH_WAIT_MS = 60_000
MERMAID_WAIT_MS = 30_000
CHROMIUM_ARGS = [
    # Chromium's own background traffic (updates, sync, safe browsing) is refused on this
    # network: switch it off, so that every request seen is the page's.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-gpu",
]


# --- which pages ------------------------------------------------------------------------------


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return pages


# Sphinx's own pages besides the chapters: the redirect at the root, the index and the search.
EXTRA_PAGES = ["index", "genindex", "search"]
PAGES = _toc_pages() + EXTRA_PAGES


# --- the browser and the HTML -------------------------------------------------------------------


def _chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _requirements() -> str | None:
    """Why the browser tests cannot run here, or None."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the Python package playwright (pip install -e '.[test]')")
    if _chromium() is None:
        missing.append(
            "Chromium (apt-get install -y chromium, as root: .ci/run does it; or CHROMIUM=/path/to/chrome)"
        )
    return "browser test needs " + " and ".join(missing) if missing else None


@dataclass
class Build:
    html: Path
    log: str = ""
    seconds: float = 0.0
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (page, message)


WARNING_RE = re.compile(r"^(?P<path>/[^:]+?)(?::\d+)?: (?:WARNING|ERROR): (?P<msg>.*)$")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def _page_of(path: str) -> str:
    try:
        rel = Path(path).resolve().relative_to(ROOT)
    except ValueError:
        return path
    return rel.with_suffix("").as_posix()


def _build_book(out: Path) -> Build:
    """jupyter-book build of this checkout into `out`, notebooks not executed."""
    # MathJax and mermaid into _build/vendor/ (as `make book` does): cheap when already there.
    vendor = subprocess.run([sys.executable, str(ROOT / ".ci" / "vendor_assets.py")], cwd=ROOT,
                            capture_output=True, text=True)
    assert vendor.returncode == 0, f".ci/vendor_assets.py failed:\n{vendor.stdout}{vendor.stderr}"
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    (out / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf8")
    jb = Path(sys.executable).with_name("jupyter-book")
    command = [str(jb) if jb.exists() else "jupyter-book", "build", str(ROOT), "--config",
               str(out / "_config.yml"), "--path-output", str(out), "-n", "--keep-going", "--builder", "html"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, NO_COLOR="1"))
    seconds = time.perf_counter() - start
    log = ANSI_RE.sub("", done.stdout + done.stderr)
    html = out / "_build" / "html"
    assert done.returncode == 0 and (html / "index.html").is_file(), (
        f"jupyter-book build failed (exit {done.returncode}):\n{log[-6000:]}"
    )
    found = []
    for line in log.splitlines():
        m = WARNING_RE.match(line.strip())
        if m:
            found.append((_page_of(m["path"]), m["msg"]))
        elif "WARNING:" in line or "ERROR:" in line:
            found.append(("", line.strip()))
    return Build(html=html, log=log, seconds=seconds, warnings=found)


@pytest.fixture(scope="session")
def book(tmp_path_factory) -> Build:
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    given = os.environ.get("BOOK_HTML")
    if given:
        html = Path(given) if Path(given).is_absolute() else ROOT / given
        if not (html / "index.html").is_file():
            pytest.fail(f"BOOK_HTML={given}: no index.html there (run `make book` first)")
        return Build(html=html)
    build = _build_book(tmp_path_factory.mktemp("book"))
    print(f"\n[test_browser] book built (execution off) in {build.seconds:.1f} s: {build.html}")
    return build


# --- one visit per page ---------------------------------------------------------------------------


PAGE_SCRIPT = r"""
async ([mathWaitMs, mermaidWaitMs]) => {
  const problems = [];
  const add = (check, text) => problems.push([check, text]);
  const within = (promise, ms) => Promise.race([promise, new Promise((ok) => setTimeout(() => ok("timeout"), ms))]);

  // MathJax 2 (queue) or 3 (startup promise): wait until it has typeset the page.
  if (window.MathJax && window.MathJax.Hub && window.MathJax.Hub.Queue) {
    const r = await within(new Promise((ok) => MathJax.Hub.Queue(() => ok("done"))), mathWaitMs);
    if (r === "timeout") add("math", `MathJax 2 still typesetting after ${mathWaitMs} ms`);
  } else if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    const r = await within(window.MathJax.startup.promise.then(() => "done"), mathWaitMs);
    if (r === "timeout") add("math", `MathJax 3 still typesetting after ${mathWaitMs} ms`);
  }
  // Sphinx's math elements (MathJax's own output has inner spans of class "math" too).
  const output = ".MathJax, .MathJax_Display, .MathJax_SVG, .MathJax_SVG_Display, .MathJax_CHTML, mjx-container";
  const mathElements = [...document.querySelectorAll("span.math, div.math")].filter((el) => !el.parentElement.closest(output));
  if (mathElements.length && !window.MathJax) add("math", "page has math but MathJax is not loaded");
  for (const el of mathElements) {
    if (!el.querySelector(output)) {
      const tex = (el.querySelector("script[type^='math/tex']") || el).textContent.trim();
      add("math", `not typeset: ${tex.slice(0, 80)}`);
    }
  }
  for (const el of document.querySelectorAll(".MathJax .merror, .MathJax .noError, mjx-merror, [data-mjx-error]")) {
    add("math", `TeX error: ${(el.getAttribute("data-mjx-error") || el.textContent).trim().slice(0, 120)}`);
  }
  const typeset = document.querySelectorAll(output).length;

  // mermaid renders on window.load; wait for every diagram to hold an <svg>.
  const diagrams = [...document.querySelectorAll(".mermaid")].filter((el) => !el.closest(".mermaid-fullscreen-modal"));
  if (diagrams.length) {
    const t0 = Date.now();
    while (Date.now() - t0 < mermaidWaitMs && !diagrams.every((el) => el.querySelector("svg"))) {
      await new Promise((ok) => setTimeout(ok, 100));
    }
  }
  for (const el of diagrams) {
    const svg = el.querySelector("svg");
    if (!svg) { add("mermaid", `no <svg> drawn: ${el.textContent.trim().slice(0, 60)}`); continue; }
    if (svg.getAttribute("aria-roledescription") === "error" || /Syntax error/.test(svg.textContent)) {
      add("mermaid", `mermaid drew its error chart: ${svg.textContent.trim().slice(0, 120)}`);
    }
    const box = svg.getBoundingClientRect();
    if (box.width < 10 || box.height < 10) add("mermaid", `svg is ${box.width}x${box.height} px`);
  }

  // Images: lazy ones are made eager, then every <img> must decode with a non-zero size.
  const images = [...document.images];
  for (const img of images) if (img.loading === "lazy") img.loading = "eager";
  await within(Promise.allSettled(images.map((img) => img.decode())), 15000);
  for (const img of images) {
    if (!img.complete || !img.naturalWidth || !img.naturalHeight) {
      add("image", `not loaded: ${img.getAttribute("src").slice(0, 120)} (alt: ${(img.alt || "").slice(0, 40)})`);
    }
  }

  // Visible text outside code: no TeX or MyST syntax left over.
  const clone = document.body.cloneNode(true);
  for (const el of clone.querySelectorAll("pre, code, script, style, .MathJax_Preview, .MathJax_MathML, mjx-assistive-mml, .highlight, textarea")) el.remove();
  document.body.appendChild(clone);  // innerText needs layout
  clone.style.position = "absolute"; clone.style.left = "-100000px";
  const text = clone.innerText;
  clone.remove();
  const leftovers = [
    [/\$\$/, "$$"], [/\\\(|\\\)/, "\\( or \\)"], [/\\\[|\\\]/, "\\[ or \\]"], [/\\begin\{/, "\\begin{"],
    [/\$[^$\n]{0,80}\\[A-Za-z]+[^$\n]{0,80}\$/, "$...\\command...$"],
  ];
  for (const [re, what] of leftovers) {
    const m = text.match(re);
    if (m) {
      const i = m.index;
      add("math", `raw TeX (${what}) in the text: ...${text.slice(Math.max(0, i - 40), i + 60).replace(/\s+/g, " ")}...`);
    }
  }
  const role = text.match(/\{(glue|glue:[a-z]+|cite|cite:[a-z]+|ref|numref|doc|eq|math|term|download)\}`?/);
  if (role) {
    const i = role.index;
    add("text", `unrendered MyST role: ...${text.slice(Math.max(0, i - 40), i + 60).replace(/\s+/g, " ")}...`);
  }

  const links = [...document.querySelectorAll("a[href]")].map((a) => [a.getAttribute("href"), a.href]);
  const ids = [...document.querySelectorAll("[id], a[name]")].map((el) => el.id || el.getAttribute("name"));
  return {problems, links, ids, typeset, mathElements: mathElements.length, diagrams: diagrams.length, images: images.length};
}
"""


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if value and (key == "id" or (key == "name" and tag == "a")):
                self.ids.add(value)


_IDS_CACHE: dict[Path, set[str]] = {}


def _ids_in(path: Path) -> set[str]:
    if path not in _IDS_CACHE:
        parser = _Ids()
        parser.feed(path.read_text(encoding="utf8", errors="replace"))
        _IDS_CACHE[path] = parser.ids
    return _IDS_CACHE[path]


def _link_problems(page_file: Path, html_root: Path, links, live_ids) -> list[str]:
    problems = []
    seen = set()
    for raw, absolute in links:
        if absolute in seen:
            continue
        seen.add(absolute)
        parts = urlsplit(absolute)
        if parts.scheme != "file":
            continue  # external links are not followed (offline)
        target = Path(unquote(parts.path))
        if target.is_dir():
            target = target / "index.html"
        try:
            target.resolve().relative_to(html_root.resolve())
        except ValueError:
            problems.append(f"{raw}: points outside the book ({target})")
            continue
        if not target.is_file():
            problems.append(f"{raw}: no such file {target.relative_to(html_root)}")
            continue
        anchor = unquote(parts.fragment)
        if not anchor:
            continue
        ids = set(live_ids) if target.resolve() == page_file.resolve() else _ids_in(target)
        if target.suffix == ".html" and anchor not in ids:
            problems.append(f"{raw}: no id {anchor!r} in {target.relative_to(html_root)}")
    return problems


@dataclass
class Visit:
    page: str
    problems: list[tuple[str, str]]
    stats: dict
    screenshot: Path | None


@pytest.fixture(scope="session")
def browser(book):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("BROWSER_TEST_SCREENSHOTS", ROOT / "_build" / "screenshots"))
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


_VISITS: dict[str, Visit] = {}


def visit(book: Build, browser, screenshots: Path, page: str) -> Visit:
    if page in _VISITS:
        return _VISITS[page]
    page_file = book.html / f"{page}.html"
    problems: list[tuple[str, str]] = []
    if not page_file.is_file():
        problems.append(("build", f"{page}.html was not built"))
        _VISITS[page] = Visit(page, problems, {}, None)
        return _VISITS[page]

    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")

    def route(r):
        url = r.request.url
        if url.startswith(("file:", "data:", "blob:")):
            r.continue_()
        else:
            problems.append(("request", f"network request refused: {url}"))
            r.abort("blockedbyclient")

    context.route("**/*", route)
    tab = context.new_page()
    root_url = book.html.resolve().as_uri() + "/"
    tab.on("requestfailed", lambda req: None if not req.url.startswith("file:") else problems.append(
        ("request", f"failed: {req.url.replace(root_url, '')} ({req.failure})")))
    tab.on("console", lambda msg: problems.append(("console", f"{msg.text[:300]}")) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: problems.append(("console", f"uncaught: {str(exc)[:300]}")))
    result: dict = {}
    shot = None
    start = time.perf_counter()
    try:
        tab.goto(page_file.as_uri(), wait_until="load", timeout=60_000)
        if page == "index":  # a meta-refresh redirect to the root page: check where it lands
            tab.wait_for_url(lambda url: not url.endswith("/index.html"), timeout=10_000)
            tab.wait_for_load_state("load")
        result = tab.evaluate(PAGE_SCRIPT, [MATH_WAIT_MS, MERMAID_WAIT_MS])
        problems.extend((check, text) for check, text in result.pop("problems"))
        landed = Path(unquote(urlsplit(tab.url).path))
        links, ids = result.pop("links"), result.pop("ids")
        problems.extend(("link", p) for p in _link_problems(landed, book.html, links, ids))
        shot = screenshots / (page.replace("/", "__") + ".png")
        tab.screenshot(path=str(shot), full_page=True)
        tab.wait_for_timeout(200)  # console errors that come late are still recorded in `problems`
    except Exception as exc:  # a page that never loads, a script that hangs
        problems.append(("console", f"visit failed: {type(exc).__name__}: {str(exc)[:300]}"))
    finally:
        context.close()
    result["seconds"] = round(time.perf_counter() - start, 1)
    _VISITS[page] = Visit(page, problems, result, shot)
    return _VISITS[page]


# --- the known-defect list ------------------------------------------------------------------------

_USED: set[int] = set()


def _unexpected(page: str, problems: list[tuple[str, str]]) -> list[str]:
    left = []
    for check, text in problems:
        for i, (known_page, known_check, substring, _reason) in enumerate(KNOWN_DEFECTS):
            if known_page in (page, "*") and known_check == check and substring in text:
                _USED.add(i)
                break
        else:
            left.append(f"[{check}] {text}")
    return left


@pytest.fixture(scope="session", autouse=True)
def _report_stale_known_defects(request):
    yield
    ran = getattr(request.session, "_browser_pages_ran", set())
    for i, (page, check, substring, reason) in enumerate(KNOWN_DEFECTS):
        if i not in _USED and (page in ran or (page == "*" and ran)):
            warnings.warn(f"KNOWN_DEFECTS entry no longer matches anything, remove it: "
                          f"{(page, check, substring)} ({reason})", stacklevel=1)


# --- the tests ------------------------------------------------------------------------------------


def test_build_warnings(book):
    """Sphinx's warnings while rendering the stored outputs (notebooks not executed)."""
    if not book.log:
        pytest.skip("BOOK_HTML given: the build's log is not at hand")
    problems = [(page or "(build)", msg) for page, msg in book.warnings]
    left = []
    for page, msg in problems:
        left.extend(f"{page}: {p}" for p in _unexpected(page, [("build", msg)]))
    assert not left, "build warnings:\n" + "\n".join(left)


@pytest.mark.parametrize("page", PAGES)
def test_page_in_the_browser(book, browser, screenshots, page, request):
    result = visit(book, browser, screenshots, page)
    ran = getattr(request.session, "_browser_pages_ran", set())
    ran.add(page)
    request.session._browser_pages_ran = ran
    left = _unexpected(page, result.problems)
    assert not left, f"{page}.html (screenshot {result.screenshot}; {result.stats}):\n" + "\n".join(left)


def test_every_built_page_is_checked(book):
    built = sorted(
        p.relative_to(book.html).with_suffix("").as_posix()
        for p in book.html.rglob("*.html")
        if not p.relative_to(book.html).parts[0].startswith("_")
    )
    assert sorted(set(built) - set(PAGES)) == [], "pages built but not in _toc.yml nor EXTRA_PAGES"

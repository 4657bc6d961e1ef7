"""Render pages of the built documentation in a headless browser and save screenshots.

A person looks at the site through a browser, so this is checked in one: Chromium
(Debian's ``chromium`` package: ``apt-get install -y chromium``) opens the built pages
from disk, saves a screenshot of each and its DOM after scripts ran, and the script checks
that the DOM holds what the page must show (the figure on the index, the committed
full-run results and figure on a gallery page). Look at the screenshots too::

    make docs                                   # or: python -m sphinx -b html docs docs/_build/html
    python docs/render_check.py --html docs/_build/html --out render_check/

Exit status 1 when a page is missing, the browser fails, or a check fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

# page (relative to the HTML root) -> strings its rendered DOM must contain
PAGES = {
    "index.html": ["_images/earthquakes_poisson_hmm", "GaussianHMM", "Getting started"],
    "auto_examples/plot_old_faithful_hmm.html": ["Results of the full run", "full settings",
                                                 "_images/old_faithful_hmm.png", "P(long after short)"],
    "auto_examples/plot_neural_char_lm.html": ["Results of the full run", "bits/char", "<table", "fast mode"],
}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--no-first-run"]


def find_browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("no chromium on PATH (apt-get install -y chromium)")


def render(browser, url, screenshot, size=(1280, 1600), timeout=120):
    """Screenshot of ``url`` into ``screenshot``; returns the DOM after scripts ran."""
    profile = tempfile.mkdtemp(prefix="render-check-profile-")
    try:
        common = FLAGS + [f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"]
        subprocess.run([browser, *common, f"--screenshot={screenshot}", url], check=True, capture_output=True,
                       timeout=timeout)
        dom = subprocess.run([browser, *common, "--virtual-time-budget=5000", "--dump-dom", url], check=True,
                             capture_output=True, text=True, timeout=timeout).stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return dom


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", default=os.path.join("docs", "_build", "html"), help="root of the built site")
    parser.add_argument("--out", default="render_check", help="folder for the screenshots")
    args = parser.parse_args(argv)
    browser = find_browser()
    os.makedirs(args.out, exist_ok=True)
    failures = []
    for page, needles in PAGES.items():
        path = os.path.abspath(os.path.join(args.html, page))
        if not os.path.exists(path):
            failures.append(f"{page}: not built")
            continue
        shot = os.path.join(args.out, page.replace("/", "__").replace(".html", ".png"))
        dom = render(browser, "file://" + path, shot)
        size = os.path.getsize(shot) if os.path.exists(shot) else 0
        missing = [n for n in needles if n not in dom]
        status = "ok" if not missing and size > 10_000 else "FAILED"
        print(f"{status}  {page} -> {shot} ({size // 1024} KiB screenshot, {len(dom) // 1024} KiB DOM)")
        if missing:
            failures.append(f"{page}: the rendered page lacks {missing}")
        if size <= 10_000:
            failures.append(f"{page}: the screenshot is blank or missing")
    for failure in failures:
        print("  " + failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

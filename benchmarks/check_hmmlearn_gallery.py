"""Run hmmlearn's gallery examples on probkit with only the import changed.

Copies ``<hmmlearn checkout>/examples/*.py`` to a temporary folder, rewrites every
``hmmlearn`` import to ``probkit.compat.hmmlearn`` (``from hmmlearn import hmm, vhmm`` ->
``from probkit.compat.hmmlearn import hmm, vhmm``; ``from hmmlearn.hmm import GaussianHMM``
-> ``from probkit.compat.hmmlearn.hmm import GaussianHMM``), and runs each script headless
(``MPLBACKEND=Agg``) in a fresh interpreter. Prints one line per example: pass/fail, the
wall time, and with ``--reference`` the unmodified script's time on hmmlearn itself. Exit
status 1 if any example fails. Nothing of hmmlearn's code is kept.

Run from the repository root (any hmmlearn checkout; ``git clone
https://github.com/hmmlearn/hmmlearn`` at tag 0.3.3 is what the documentation reports):

    PYTHONPATH=. python benchmarks/check_hmmlearn_gallery.py /path/to/hmmlearn [--reference]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# ``import hmmlearn`` / ``from hmmlearn[.x] import ...`` at the start of a line (any indentation)
_IMPORT = re.compile(r"^(\s*)(from|import)(\s+)hmmlearn\b", flags=re.MULTILINE)


def rewrite_imports(source):
    """Point every hmmlearn import of ``source`` at probkit.compat.hmmlearn; return (text, count)."""
    return _IMPORT.subn(r"\1\2\3probkit.compat.hmmlearn", source)


def run_script(path, cwd, timeout, extra_path=()):
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), env.get("PYTHONPATH", "")]).strip(os.pathsep)
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
        ok, tail = proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired:
        ok, tail = False, f"timed out after {timeout} s"
    return ok, time.perf_counter() - start, tail


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hmmlearn_checkout", type=Path, help="folder of an hmmlearn checkout (with examples/)")
    parser.add_argument("--reference", action="store_true", help="also run the unmodified scripts on hmmlearn")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per script (default 1800)")
    parser.add_argument("--only", nargs="*", default=None, help="example file names to run (default: all)")
    args = parser.parse_args(argv)

    examples = sorted((args.hmmlearn_checkout / "examples").glob("*.py"))
    if args.only:
        examples = [p for p in examples if p.name in set(args.only)]
    if not examples:
        parser.error(f"no examples/*.py under {args.hmmlearn_checkout}")

    failures = 0
    print(f"{'example':40s} {'probkit':>8s} {'time s':>8s}" + (f" {'hmmlearn s':>11s}" if args.reference else ""))
    with tempfile.TemporaryDirectory(prefix="hmmlearn_gallery_") as tmp:
        for example in examples:
            text, n_rewritten = rewrite_imports(example.read_text())
            if n_rewritten == 0:
                print(f"{example.name:40s} {'skip':>8s} (imports nothing from hmmlearn)")
                continue
            work = Path(tmp) / example.stem
            work.mkdir()
            (work / example.name).write_text(text)
            ok, seconds, tail = run_script(work / example.name, work, args.timeout, extra_path=[REPO_ROOT])
            line = f"{example.name:40s} {'pass' if ok else 'FAIL':>8s} {seconds:8.1f}"
            if args.reference:
                ref_dir = Path(tmp) / f"{example.stem}_reference"
                ref_dir.mkdir()
                shutil.copy(example, ref_dir / example.name)
                ref_ok, ref_seconds, _ = run_script(ref_dir / example.name, ref_dir, args.timeout)
                line += f" {ref_seconds:11.1f}" + ("" if ref_ok else " (hmmlearn failed)")
            print(line, flush=True)
            if not ok:
                failures += 1
                print("    " + tail.replace("\n", "\n    "))
    print(f"{len(examples) - failures} of {len(examples)} examples ran with only the import changed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

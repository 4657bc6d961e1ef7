"""Loading hostile model files: peak memory, time and outcome of ``probkit.load``.

Builds four hostile files from small fitted models, then loads each in a fresh
interpreter that imports probkit from ``--tree`` (a checkout), and reports what the load
did (refused with ``ModelFileError``, loaded, or another exception), its wall time and
how much it raised the resident-memory high-water mark above the resident size after
the imports (``benchmarks/_common.py::peak_rss_during``).

Cases:

``meta-bomb``
    ``meta.json`` deflated: the real metadata followed by 1 GiB of spaces (valid JSON),
    about 1 MB on disk.
``member-bomb``
    An array member that inflates to 1 GiB of zeros while the manifest says it holds the
    original (a few hundred) bytes.
``d-model-6000``
    A fitted ``SequenceClassifier(backbone="gru", d_model=8, n_layers=1)`` whose
    ``d_model`` is edited to 6000 in ``meta.json`` (the state dict stays the small one).
``nan-weights``
    The same classifier with every weight of its torch state dict set to NaN (manifest
    updated to match).

Run (compare a checkout of an older probkit with this one; ``LABEL=PATH``)::

    git archive <old commit> | tar -x -C /tmp/old
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
        python benchmarks/bench_io_hostile.py --tree before=/tmp/old --tree after=.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402

GIB = 1 << 30
CHUNK = 1 << 24


def _members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _write(path, members, deflated=(), streamed=None):
    """Write ``members`` (name -> bytes); names in ``deflated`` are compressed.

    ``streamed`` = ``(name, prefix, filler_byte, n_filler)`` writes a member as ``prefix``
    followed by ``n_filler`` copies of one byte without holding it in memory.
    """
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            if streamed is not None and name == streamed[0]:
                _, prefix, filler, n = streamed
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as f:
                    f.write(prefix)
                    block = filler * CHUNK
                    for start in range(0, n, CHUNK):
                        f.write(block[: min(CHUNK, n - start)])
                continue
            zf.writestr(name, blob, compress_type=zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED)


def _with_meta(members, edit):
    meta = json.loads(members["meta.json"])
    edit(meta)
    return {**members, "meta.json": json.dumps(meta).encode()}


def build_cases(folder):
    """Write the hostile files into ``folder``; return ``{case: path}``."""
    import numpy as np
    import torch

    import probkit
    from probkit.io import dumps
    from probkit.neural import SequenceClassifier

    rng = np.random.RandomState(0)
    hmm = probkit.GaussianHMM(2, random_state=0).fit(rng.normal(size=(60, 2)))
    hmm_members = _members(dumps(hmm))
    seqs = [rng.normal(size=(rng.randint(2, 7), 2)) for _ in range(24)]
    clf = SequenceClassifier(backbone="gru", d_model=8, n_layers=1, max_epochs=2, random_state=0)
    clf_members = _members(dumps(clf.fit(seqs, np.arange(24) % 3)))

    paths = {}
    paths["meta-bomb"] = os.path.join(folder, "meta_bomb.pk")
    _write(paths["meta-bomb"], hmm_members, streamed=("meta.json", hmm_members["meta.json"], b" ", GIB))

    array = next(n for n in hmm_members if n.endswith(".npy"))
    paths["member-bomb"] = os.path.join(folder, "member_bomb.pk")
    _write(paths["member-bomb"], hmm_members, streamed=(array, hmm_members[array][:128], b"\0", GIB))

    paths["d-model-6000"] = os.path.join(folder, "d_model_6000.pk")
    _write(paths["d-model-6000"], _with_meta(clf_members, lambda m: m["model"]["params"].update(d_model=6000)))

    state = torch.load(io.BytesIO(clf_members["torch/module_.pt"]), weights_only=True)
    buf = io.BytesIO()
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}, buf)
    nan_pt = buf.getvalue()

    def nan_manifest(meta):
        meta["manifest"]["torch/module_.pt"] = {"size": len(nan_pt), "sha256": hashlib.sha256(nan_pt).hexdigest()}
    paths["nan-weights"] = os.path.join(folder, "nan_weights.pk")
    _write(paths["nan-weights"], _with_meta({**clf_members, "torch/module_.pt": nan_pt}, nan_manifest))
    return paths


def measure(path):
    """In this process: load ``path`` once; return outcome, seconds and peak RSS rise (MiB)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import peak_rss_during

    import probkit
    import probkit.neural  # noqa: F401  (imported before measuring, as a user's program would)
    from probkit.io import ModelFileError

    result = {}

    def run():
        t0 = time.perf_counter()
        try:
            model = probkit.load(path)
            result["outcome"] = f"loaded {type(model).__name__}"
        except ModelFileError as exc:
            result["outcome"] = "ModelFileError: " + str(exc).replace(path, "<file>")[:110]
        except Exception as exc:  # noqa: BLE001 - the point is to report what escaped
            result["outcome"] = f"{type(exc).__name__}: {str(exc)[:110]}"
        result["seconds"] = time.perf_counter() - t0

    result["peak_mib"] = peak_rss_during(run)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", required=True,
                        help="[LABEL=]PATH of a checkout whose probkit loads the files (repeat to compare)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    here = os.path.abspath(__file__)
    threads = os.environ["OMP_NUM_THREADS"]
    with tempfile.TemporaryDirectory() as folder:
        paths = build_cases(folder)
        print(f"OMP/MKL/OPENBLAS threads = {threads}; peak = rise of resident memory during load (MiB)\n")
        print("| tree | case | file size | outcome | seconds | peak MiB |")
        print("|---|---|---|---|---|---|")
        for spec in args.tree:
            label, _, tree = spec.rpartition("=")
            tree = os.path.abspath(tree)
            label = label or tree
            for case, path in paths.items():
                env = dict(os.environ, PYTHONPATH=tree)
                out = subprocess.run([sys.executable, here, "--tree", tree, "--child", path], cwd=tree, env=env,
                                     capture_output=True, text=True)
                if out.returncode:
                    row = {"outcome": f"crashed (exit {out.returncode}): {out.stderr.strip()[-100:]}",
                           "seconds": float("nan"), "peak_mib": float("nan")}
                else:
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                size = os.path.getsize(path)
                print(f"| {label} | {case} | {size / 1e6:.2f} MB | {row['outcome']} | {row['seconds']:.2f} | "
                      f"{row['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

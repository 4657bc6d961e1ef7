"""Loading hostile model files: bounded memory, strict parsing, validated values, one error type.

Every hostile file here is built from a real saved model by changing one thing; each
test states what a safe loader must do with it (refuse it with a ModelFileError naming
the file, without inflating or allocating what the file asks for).
"""

import functools
import hashlib
import io
import json
import os
import struct
import threading
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pytest
import torch

import probkit
import probkit.io
from probkit.io import MAX_INFLATION_RATIO, MAX_META_BYTES, MAX_META_CONTAINERS, ModelFileError, dumps, load, loads
from tests.product.test_io import X_REAL, TinyNeuralEstimator, _fit, _latent_neural_cases

MIB = 1 << 20
BOMB_BYTES = 256 * MIB     # inflated size of the zip bombs
PEAK_LIMIT = 100 * MIB     # what loading one may cost


# ---------------------------------------------------------------------------- building files
def _members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _pack(members):
    """A zip of ``members`` (name -> bytes), written by zipfile (consistent headers)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return out.getvalue()


def _edit_meta(data, edit):
    members = _members(data)
    meta = json.loads(members["meta.json"])
    edit(meta)
    members["meta.json"] = json.dumps(meta).encode()
    return _pack(members)


def _resign(members, name, blob):
    """Replace member ``name`` and record its new size and checksum in the manifest (what an attacker can do)."""
    meta = json.loads(members["meta.json"])
    meta["manifest"][name] = {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    return {**members, name: blob, "meta.json": json.dumps(meta).encode()}


def _entry(name, data, *, method=zipfile.ZIP_STORED, declared=None, flags=0, crc=None, payload=None):
    """One member for :func:`_raw_zip`; ``declared`` (size in the headers) and ``crc`` may lie."""
    if payload is None:
        payload = data if method != zipfile.ZIP_DEFLATED else _deflate(data)
    return dict(name=name.encode() if isinstance(name, str) else name, payload=payload, method=method, flags=flags,
                declared=len(data) if declared is None else declared, crc=zlib.crc32(data) if crc is None else crc)


def _deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _raw_zip(entries):
    """A zip archive written byte by byte, so its headers can say anything."""
    local, central, offset = [], [], 0
    for e in entries:
        sizes = (e["crc"], len(e["payload"]), e["declared"], len(e["name"]))
        head = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, e["flags"], e["method"], 0, 0x21, *sizes, 0) + e["name"]
        local.append(head + e["payload"])
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, e["flags"], e["method"], 0, 0x21, *sizes,
                                   0, 0, 0, 0, 0, offset) + e["name"])
        offset += len(head) + len(e["payload"])
    directory = b"".join(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), offset, 0)
    return b"".join(local) + directory + end


def _raw_model(data, **overrides):
    """The members of a saved model as :func:`_raw_zip` entries; ``overrides`` maps a name to an entry."""
    return [overrides.get(name) or _entry(name, blob) for name, blob in _members(data).items()]


def _bomb(prefix, filler, n_bytes):
    """Raw deflate of ``prefix`` + ``n_bytes`` of ``filler``, built in a blink, and the CRC-32 of its content.

    After a full flush the compressor forgets its history, so every block of filler
    compresses to the same bytes: compress one and repeat it.
    """
    block = filler * (16 * MIB)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    body = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    for _ in range(n_bytes // len(block)):
        crc = zlib.crc32(block, crc)
    return head + body * (n_bytes // len(block)) + c.flush(), crc


def _python_peak(fn):
    """Peak of Python allocations during ``fn()`` (bytes, str, parsed JSON: what inflating a member makes)."""
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _refusal(data, match=None, source="hostile.pk"):
    with pytest.raises(ModelFileError, match=match) as info:
        loads(data, source=source)
    assert source in str(info.value) and info.value.path == source
    return info.value


@functools.lru_cache(maxsize=None)
def _saved(name):
    """The saved bytes of test_io's fitted case ``name`` (fitted once)."""
    return dumps(_fit(name)[0])


@pytest.fixture(scope="module")
def hmm_bytes():
    return _saved("gaussian-hmm")


def _array_ref(meta, attr):
    node = meta["model"]["state"][attr]
    if node.get("__probkit__") == "tuple":
        node = node["items"][0]
    return node["array"]


def _with_array(data, attr, change):
    """``data`` with the array of attribute ``attr`` replaced by ``change(array)`` (manifest re-signed)."""
    members = _members(data)
    ref = _array_ref(json.loads(members["meta.json"]), attr)
    buf = io.BytesIO()
    np.save(buf, change(np.load(io.BytesIO(members[ref])).copy()), allow_pickle=False)
    return _pack(_resign(members, ref, buf.getvalue()))


# ---------------------------------------------------------------------------- zip entries, bounded reading
def test_meta_json_bomb_is_refused_before_inflating(hmm_bytes):
    meta = _members(hmm_bytes)["meta.json"]
    payload, crc = _bomb(meta, b" ", BOMB_BYTES)       # valid JSON: the metadata then spaces
    data = _raw_zip(_raw_model(hmm_bytes, **{"meta.json": _entry(
        "meta.json", b"", method=zipfile.ZIP_DEFLATED, payload=payload, declared=len(meta) + BOMB_BYTES, crc=crc)}))
    assert len(data) < 2 * MIB
    peak = _python_peak(lambda: _refusal(data, "MAX_META_BYTES"))
    assert peak < PEAK_LIMIT


def test_lying_zip_header_cannot_inflate_more_than_it_declares(hmm_bytes):
    members = _members(hmm_bytes)
    name = next(n for n in members if n.endswith(".npy"))
    payload, crc = _bomb(members[name], b"\0", BOMB_BYTES)
    # Headers and manifest agree on the member's true size; its data inflate to 256 MiB more.
    data = _raw_zip(_raw_model(hmm_bytes, **{name: _entry(name, members[name], method=zipfile.ZIP_DEFLATED,
                                                          payload=payload, crc=crc)}))
    peak = _python_peak(lambda: _refusal(data, "cannot be read|checksum"))
    assert peak < PEAK_LIMIT


def test_member_size_is_checked_against_the_manifest_before_reading(hmm_bytes, monkeypatch):
    members = _members(hmm_bytes)
    name = next(n for n in members if n.endswith(".npy"))
    meta = json.loads(members["meta.json"])
    meta["manifest"][name]["size"] = 10
    data = _pack({**members, "meta.json": json.dumps(meta).encode()})
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, member, *a, **k: (
        opened.append(getattr(member, "filename", member)), real_open(self, member, *a, **k))[1])
    _refusal(data, f"{name}.*manifest records 10")
    assert opened == ["meta.json"]


def test_inflation_beyond_the_ratio_cap_is_refused(hmm_bytes):
    members = _members(hmm_bytes)
    name = next(n for n in members if n.endswith(".npy"))
    big = np.zeros(MAX_INFLATION_RATIO * 64 * 1024)      # the file stays far below 64 KiB
    buf = io.BytesIO()
    np.save(buf, big)
    signed = _resign(members, name, buf.getvalue())
    data = _raw_zip([_entry(n, b, method=zipfile.ZIP_DEFLATED if n == name else zipfile.ZIP_STORED)
                     for n, b in signed.items()])
    assert len(data) * MAX_INFLATION_RATIO < big.nbytes
    _refusal(data, "MAX_INFLATION_RATIO")


def test_meta_json_larger_than_the_cap_is_refused(hmm_bytes):
    members = _members(hmm_bytes)
    padded = members["meta.json"] + b" " * (MAX_META_BYTES + 1 - len(members["meta.json"]))
    _refusal(_pack({**members, "meta.json": padded}), "MAX_META_BYTES")
    within = members["meta.json"] + b" " * 1000
    assert isinstance(loads(_pack({**members, "meta.json": within})), probkit.GaussianHMM)


def test_saving_metadata_beyond_the_caps_is_refused(monkeypatch):
    monkeypatch.setattr(probkit.io, "MAX_META_BYTES", 64 * 1024)      # small caps: the same code, fast
    monkeypatch.setattr(probkit.io, "MAX_META_CONTAINERS", 1000)
    est = probkit.GaussianMixture(1).fit(X_REAL)
    est.note_ = "x" * 64 * 1024      # a string, not an array: it would go to meta.json
    with pytest.raises(ValueError, match="MAX_META_BYTES"):
        dumps(est)
    del est.note_
    est.history_ = [[] for _ in range(1001)]
    with pytest.raises(ValueError, match="MAX_META_CONTAINERS"):
        dumps(est)
    est.history_ = [[] for _ in range(900)]
    assert len(loads(dumps(est)).history_) == 900


@pytest.mark.parametrize("where", ["not listed in the manifest", "not referenced by the model"])
def test_members_the_model_does_not_use_are_refused(hmm_bytes, where):
    members = _members(hmm_bytes)
    blob = members[next(n for n in members if n.endswith(".npy"))]
    extra = {**members, "arrays/99.npy": blob}
    if where == "not referenced by the model":
        extra = _resign(extra, "arrays/99.npy", blob)
    _refusal(_pack(extra), f"'arrays/99.npy' is {where}")


@pytest.mark.parametrize("duplicate", ["array", "meta.json"])
def test_duplicate_member_names_are_refused(hmm_bytes, duplicate):
    members = _members(hmm_bytes)
    name = "meta.json" if duplicate == "meta.json" else next(n for n in members if n.endswith(".npy"))
    entries = _raw_model(hmm_bytes) + [_entry(name, members[name])]
    _refusal(_raw_zip(entries), f"two members named '{name}'")


# ---------------------------------------------------------------------------- strict meta.json
def _meta_text(data, old, new):
    members = _members(data)
    text = members["meta.json"].decode()
    assert text.count(old) >= 1
    return _pack({**members, "meta.json": text.replace(old, new, 1).encode()})


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_json_numbers_are_refused(hmm_bytes, literal):
    tol = json.dumps(json.loads(_members(hmm_bytes)["meta.json"])["model"]["params"]["tol"])
    _refusal(_meta_text(hmm_bytes, f'"tol": {tol}', f'"tol": {literal}'), "meta.json is not valid JSON")


def test_duplicate_json_keys_are_refused(hmm_bytes):
    _refusal(_meta_text(hmm_bytes, '"n_components": 2', '"n_components": 2, "n_components": 3'), "duplicate key")


def test_absurd_container_counts_and_nesting_are_refused(hmm_bytes):
    many = "[" + ",".join(["[]"] * (MAX_META_CONTAINERS + 1)) + "]"
    _refusal(_meta_text(hmm_bytes, '"n_components": 2', f'"n_components": {many}'), "MAX_META_CONTAINERS")
    deep = "[" * 5000 + "]" * 5000
    _refusal(_meta_text(hmm_bytes, '"n_components": 2', f'"n_components": {deep}'), "nests too deeply")


# ---------------------------------------------------------------------------- restored values are validated
def _nan_first(a):
    a.flat[0] = np.nan
    return a


def _not_positive_definite(a):
    a[0] = -np.eye(a.shape[-1])
    return a


VALIDATION_CASES = [
    ("gaussian-hmm", "transmat_", lambda a: a * 1.5),
    ("gaussian-hmm", "startprob_", _nan_first),
    ("gaussian-hmm", "means_", lambda a: np.vstack([a, a[:1]])),     # 3 states' means for n_components=2
    ("gaussian-hmm", "covars_", lambda a: -a),
    ("gaussian-hmm-full-scaling", "covars_", _not_positive_definite),
    ("gmm-hmm", "means_", _nan_first),
    ("gmm-hmm", "weights_", lambda a: a * 2),
    ("categorical-hmm", "emissionprob_", lambda a: a - a.mean()),
    ("multinomial-hmm", "emissionprob_", _nan_first),
    ("poisson-hmm", "lambdas_", lambda a: -a),
    ("gmm-full", "covariances_", _not_positive_definite),
    ("gmm-full", "weights_", lambda a: a * 2),
    ("gmm-full", "means_", lambda a: a * np.inf),
    ("gmm-full", "precisions_cholesky_", _nan_first),
    ("gmm-tied-f32", "covariances_", lambda a: a[:1]),
    ("mixture-poisson-product", "weights_", _nan_first),
    ("bayesian-gmm-dp", "mean_precision_", lambda a: -a),
    ("bayesian-gmm-dp", "weight_concentration_", _nan_first),
    ("bayesian-gmm-diag", "covariances_", lambda a: -a),
    ("bayesian-mixture-poisson", "weights_", lambda a: a[::-1] * 3),
    ("variational-hmm-gaussian", "covars_", _nan_first),
    ("variational-hmm-gaussian", "means_posterior_", _nan_first),
    ("variational-hmm-categorical", "emissionprob_", lambda a: a * 2),
]


@pytest.mark.parametrize("name,attribute,change", VALIDATION_CASES,
                         ids=[f"{n}-{a}" for n, a, _ in VALIDATION_CASES])
def test_invalid_restored_parameters_are_refused_naming_the_attribute(tmp_path, name, attribute, change):
    path = tmp_path / "model.pk"
    path.write_bytes(_with_array(_saved(name), attribute, change))
    with pytest.raises(ModelFileError) as info:
        load(path)
    assert str(path) in str(info.value) and attribute in str(info.value)
    assert info.value.path == str(path) and info.value.attribute == attribute


@pytest.mark.parametrize("attribute", ["_io_check_state", "predict", "n_features"])
def test_restored_attributes_cannot_replace_methods(hmm_bytes, attribute):
    # A distribution class is a callable value: as an instance attribute it would stand in for the method.
    normal = {"__probkit__": "distribution_class", "name": "Normal", "module": "probkit.distributions.normal"}
    data = _edit_meta(hmm_bytes, lambda m: m["model"]["state"].update({attribute: normal}))
    assert _refusal(data, "would replace a method or property").attribute == attribute


@functools.lru_cache(maxsize=None)
def _neural(name):
    """A fitted neural estimator of test_io's cases (fitted once; the tests only read it)."""
    from tests.product.test_io import _neural_cases

    make, X, y = _neural_cases()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make().fit(X, y) if y is not None else make().fit(X)


@pytest.mark.parametrize("name,attribute,change", [
    ("sequence-regressor-gaussian", "_y_scale", lambda a: -a),
    ("sequence-classifier", "_x_mean", _nan_first),
    ("sequence-density-mixture", "_x_scale", lambda a: a[:1]),
])
def test_invalid_neural_statistics_are_refused(name, attribute, change):
    error = _refusal(_with_array(dumps(_neural(name)), attribute, change))
    assert error.attribute == attribute


def test_invalid_neural_hmm_transitions_are_refused():
    make, X, lengths = _latent_neural_cases()["neural-hmm-gaussian"]
    est = make().fit(X, lengths=lengths)
    assert _refusal(_with_array(dumps(est), "transmat_", lambda a: a * 0.5)).attribute == "transmat_"


# ---------------------------------------------------------------------------- torch modules
D_MODEL_EDITS = {
    "classifier": lambda: _neural("sequence-classifier"),
    "neural-hmm": lambda: _latent_neural_cases()["neural-hmm-poisson-f64"],
    "deep-ssm": lambda: _latent_neural_cases()["deep-ssm-poisson"],
}


def _fitted_net(kind):
    made = D_MODEL_EDITS[kind]()
    if isinstance(made, tuple):
        make, X, lengths = made
        return make().fit(X, lengths=lengths)
    return made


@pytest.mark.parametrize("kind", sorted(D_MODEL_EDITS))
def test_edited_d_model_never_builds_the_large_network(kind, monkeypatch):
    est = _fitted_net(kind)
    data = _edit_meta(dumps(est), lambda m: m["model"]["params"].update(d_model=2048))
    built_on = []
    make_net = type(est)._make_net

    def spy(self):
        built_on.append(torch.empty(()).device.type)   # the default device the network is built on
        return make_net(self)
    monkeypatch.setattr(type(est), "_make_net", spy)
    _refusal(data, r"module_ built from the saved parameters needs [0-9,]+ bytes")
    assert built_on == ["meta"]


def test_edited_layer_count_never_builds_the_layers():
    data = _edit_meta(dumps(_neural("sequence-classifier")), lambda m: m["model"]["params"].update(n_layers=20_000))
    peak = _python_peak(lambda: _refusal(data, "^hostile.pk is corrupted: building SequenceClassifier.module_ from the "
                                               "saved parameters creates more than [0-9,]+ parameters"))
    assert peak < 20 * MIB


def test_nan_weights_are_refused():
    est = _neural("sequence-classifier")
    members = _members(dumps(est))
    state = torch.load(io.BytesIO(members["torch/module_.pt"]), weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone().fill_(float("nan"))
    buf = io.BytesIO()
    torch.save(state, buf)
    error = _refusal(_pack(_resign(members, "torch/module_.pt", buf.getvalue())), f"{key} contains NaN")
    assert error.attribute == "module_"


def test_modules_of_hooks_without_a_device_argument_are_still_checked():
    est = TinyNeuralEstimator().fit(X_REAL)
    members = _members(dumps(est))
    state = torch.load(io.BytesIO(members["torch/module_.pt"]), weights_only=True)
    buf = io.BytesIO()
    torch.save({**state, "lin.weight": torch.full_like(state["lin.weight"], float("inf"))}, buf)
    _refusal(_pack(_resign(members, "torch/module_.pt", buf.getvalue())), "lin.weight contains NaN or infinity")


# ---------------------------------------------------------------------------- one error type, naming the file
def _with_entry(data, name, **change):
    members = _members(data)
    return _raw_zip([_entry(n, b, **change) if n == name else _entry(n, b) for n, b in members.items()])


def _corrupt_files(data):
    array = next(n for n in _members(data) if n.endswith(".npy"))
    return {
        "encrypted member": _with_entry(data, array, flags=0x1),
        "unknown compression method": _with_entry(data, array, method=99),
        "bzip2 member": _with_entry(data, array, method=zipfile.ZIP_BZIP2, payload=__import__("bz2").compress(
            _members(data)[array])),
        "file name not UTF-8": _raw_zip(_raw_model(data) + [_entry(b"arrays/\xff.npy", b"x", flags=0x800)]),
        "meta.json not UTF-8": _meta_bytes(data, b"\xff\xfe"),
        "meta.json not an object": _meta_bytes(data, b"[]", replace=True),
        "estimator state a list": _edit_meta(data, lambda m: m["model"].update(state=[])),
        "manifest size a string": _edit_meta(data, lambda m: m["manifest"][array].update(size="10")),
    }


def _meta_bytes(data, blob, replace=False):
    members = _members(data)
    return _pack({**members, "meta.json": blob if replace else blob + members["meta.json"]})


@pytest.mark.parametrize("kind", ["encrypted member", "unknown compression method", "bzip2 member",
                                  "file name not UTF-8", "meta.json not UTF-8", "meta.json not an object",
                                  "estimator state a list", "manifest size a string"])
def test_every_corruption_is_a_model_file_error_naming_the_file(hmm_bytes, tmp_path, kind):
    path = tmp_path / "corrupt.pk"
    path.write_bytes(_corrupt_files(hmm_bytes)[kind])
    with pytest.raises(ModelFileError) as info:
        load(path)
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_special_files_are_not_read(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory, not a regular file"):
        load(tmp_path)
    fifo = tmp_path / "pipe.pk"
    os.mkfifo(fifo)
    outcome = []

    def run():
        try:
            load(fifo)
        except ModelFileError as exc:
            outcome.append(str(exc))
    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    reader.join(30)
    if reader.is_alive():    # a loader that blocks on the pipe: release it before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert outcome and "is a named pipe, not a regular file" in outcome[0]


# ---------------------------------------------------------------------------- fuzzing
def _zip_field_offsets(data):
    """Offsets and widths of the size, CRC, flag, method and length fields of every zip header."""
    fields = []
    for signature, layout in ((b"PK\x03\x04", [(6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)]),
                              (b"PK\x01\x02", [(8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (42, 4)]),
                              (b"PK\x05\x06", [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)])):
        start = data.find(signature)
        while start >= 0:
            fields += [(start + off, width) for off, width in layout]
            start = data.find(signature, start + 1)
    return fields


def _mutate(data, kind, rng):
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 5)):
            buf[rng.randint(len(buf))] ^= 1 << rng.randint(8)
    elif kind == "truncate":
        del buf[rng.randint(len(buf)):]
    elif kind == "header":
        fields = _zip_field_offsets(data)
        offset, width = fields[rng.randint(len(fields))]
        value = rng.choice([0, 1, (1 << 8 * width) - 1, rng.randint(0, 1 << min(8 * width, 31))])
        buf[offset:offset + width] = int(value).to_bytes(width, "little")
    elif kind == "manifest":
        meta = json.loads(_members(data)["meta.json"])
        name = sorted(meta["manifest"])[rng.randint(len(meta["manifest"]))]
        entry = meta["manifest"][name]
        edit = rng.randint(5)
        if edit == 0:
            entry["size"] += int(rng.choice([-1, 1, 1 << 40]))
        elif edit == 1:
            entry["sha256"] = hashlib.sha256(entry["sha256"].encode()).hexdigest()
        elif edit == 2:
            del meta["manifest"][name]
        elif edit == 3:
            meta["manifest"] = dict(reversed(list(meta["manifest"].items())))    # harmless: order
        else:
            meta["manifest"]["arrays/7777.npy"] = entry
        return _pack({**_members(data), "meta.json": json.dumps(meta).encode()})
    elif kind == "resigned":
        members = _members(data)
        names = [n for n in members if n != "meta.json"]
        name = names[rng.randint(len(names))]
        blob = bytearray(members[name])
        for _ in range(rng.randint(1, 4)):
            blob[rng.randint(min(len(blob), 160))] ^= 1 << rng.randint(8)    # mostly headers and records
        return _pack(_resign(members, name, bytes(blob)))
    return bytes(buf)


def _same_model(a, b):
    ma, mb = _members(dumps(a)), _members(dumps(b))
    return ma == mb


@pytest.fixture(scope="module")
def fuzz_models():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [_fit("gaussian-hmm")[0], _fit("gmm-full")[0], _neural("sequence-classifier")]


def test_fuzzed_files_load_identically_or_raise_model_file_errors(fuzz_models):
    rng = np.random.RandomState(12345)
    kinds = ["flip", "truncate", "header", "manifest", "resigned"]
    counts, failures = {}, []
    for case in range(360):
        model = fuzz_models[case % len(fuzz_models)]
        kind = kinds[case % len(kinds)]
        data = _mutate(dumps(model), kind, rng)
        try:
            again = loads(data, source="fuzz.pk")
        except ModelFileError as exc:
            counts["refused"] = counts.get("refused", 0) + 1
            if "fuzz.pk" not in str(exc):
                failures.append((case, kind, f"error does not name the file: {exc}"))
            continue
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            failures.append((case, kind, f"{type(exc).__name__}: {exc}"))
            continue
        counts["loaded"] = counts.get("loaded", 0) + 1
        # A mutation the checksums and the zip directory let through changed nothing; a re-signed
        # member may hold other (valid) values, but never another kind of model.
        if type(again) is not type(model) or (kind != "resigned" and not _same_model(again, model)):
            failures.append((case, kind, "loaded a different model"))
    assert not failures, failures[:5]
    assert counts.get("refused", 0) > 150 and counts.get("loaded", 0) > 10, counts

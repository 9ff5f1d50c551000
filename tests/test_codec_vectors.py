"""The third direction of the codec check: gunicorn decodes what gdirty's Go
codec encodes.

compat's Go tests prove Go encode(input) == gunicorn's bytes and Go
decode(gunicorn's bytes) == gunicorn's decoded value. Here the Go encodings
of every TLV vector's input (compat's TestEmitGoEncodings) are fed to the
installed gunicorn's TLVEncoder.decode_full and compared, strictly (types,
dict order, floats by bit pattern so NaN and -0.0 count), with the decoded
value gunicorn recorded; and the golden files are checked to be exactly
what testdata/golden/gen_vectors.py produces with the installed gunicorn,
so they cannot silently rot.

Go is required: a missing toolchain is a failure, never a skip.
"""

import importlib.util
import json
import shutil
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gunicorn
import gversions

pytest.importorskip("gunicorn.dirty.tlv", reason=gversions.NO_V1)
from gunicorn.dirty.tlv import TLVEncoder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "testdata" / "golden"
GENERATOR = GOLDEN / "gen_vectors.py"
TLV_VECTORS = GOLDEN / "tlv_vectors.json"
GOLDEN_FILES = ("tlv_vectors.json", "frame_vectors.json",
                "repr_vectors.json", "appspec_vectors.json")
REGENERATE = f"{Path(sys.executable).name} testdata/golden/gen_vectors.py"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_vectors", GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# untag() rebuilds a tagged value, same() is the strict comparison: both
# come from the generator so there is one definition of the tagged form.
gen = _load_generator()

with open(TLV_VECTORS, encoding="ascii") as f:
    VECTORS = json.load(f)
CASES = VECTORS["cases"]


@pytest.fixture(scope="module")
def go_hex(tmp_path_factory):
    """{case name: hex of Go's encoding of the case's input}, written by the
    compat package's TestEmitGoEncodings (which builds the inputs with the
    same code as the Go golden tests)."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("the Go toolchain (go) is required to run the codec vectors")
    out = tmp_path_factory.mktemp("go-encodings") / "encodings.json"
    env = dict(os.environ, GDIRTY_EMIT_GO_ENCODINGS=str(out))
    proc = subprocess.run(
        [go, "test", "./compat", "-count=1", "-run", "^TestEmitGoEncodings$"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0 or not out.exists():
        pytest.fail(f"go test ./compat -run TestEmitGoEncodings failed "
                    f"({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(out.read_text())


def test_go_encoded_every_case(go_hex):
    assert sorted(go_hex) == sorted(c["name"] for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_gunicorn_decodes_go_bytes(case, go_hex):
    data = bytes.fromhex(go_hex[case["name"]])
    decoded = TLVEncoder.decode_full(data)
    expected = gen.untag(case["decoded"])
    assert gen.same(decoded, expected), (
        f"gunicorn decoded Go's bytes to {_short(decoded)}, "
        f"expected {_short(expected)}")


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_go_bytes_equal_gunicorn_bytes(case, go_hex):
    go = go_hex[case["name"]]
    # Against the recorded bytes and against the live encoder.
    live = TLVEncoder.encode(gen.untag(case["input"])).hex()
    assert live == case["hex"], "golden file is stale; regenerate it"
    if go != case["hex"]:
        at = next((i for i, (a, b) in enumerate(zip(go, case["hex"]))
                   if a != b), min(len(go), len(case["hex"])))
        pytest.fail(f"Go's encoding differs from gunicorn's at byte {at // 2}"
                    f" (Go {len(go) // 2} bytes, gunicorn "
                    f"{len(case['hex']) // 2}): Go ...{go[at:at + 40]}, "
                    f"gunicorn ...{case['hex'][at:at + 40]}")


@pytest.mark.compat
def test_golden_files_are_current(tmp_path):
    """Re-running the generator with the installed gunicorn reproduces the
    committed golden files byte for byte (on a release other than the pinned
    one, all but the recorded version)."""
    proc = subprocess.run([sys.executable, str(GENERATOR), "--out",
                           str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    stale = [name for name in GOLDEN_FILES
             if not gversions.golden_matches(GOLDEN / name, tmp_path / name)]
    assert not stale, (
        f"golden files {stale} do not match what gunicorn "
        f"{gunicorn.__version__} produces; regenerate with `{REGENERATE}` "
        f"from the repository root with gunicorn {gversions.PINNED} installed "
        f"and review the diff")


@gversions.requires_pinned
def test_golden_files_record_installed_gunicorn():
    for name in GOLDEN_FILES:
        with open(GOLDEN / name, encoding="ascii") as f:
            meta = json.load(f)
        assert meta["gunicorn_version"] == gunicorn.__version__, name


def _short(v):
    s = repr(v)
    return s if len(s) <= 120 else s[:120] + "..."

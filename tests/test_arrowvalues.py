"""Arrow arrays built from buffers (ferdata.arrowvalues) equal pyarrow's own conversion, and a
first ingest never imports pandas."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest

from ferdata.arrowvalues import bool_array, python_array, scalar

CASES = [
    (pa.string(), ["a", None, "é🙂", "", "x" * 300]),
    (pa.string(), [None, None]),
    (pa.string(), []),
    (pa.int64(), [1, None, -(2**63), 2**63 - 1, np.int64(7)]),
    (pa.float64(), [0.1, None, 1e300, -0.0, 3, np.float32(1.5)]),
    (pa.bool_(), [True, None, False, np.bool_(True)]),
    (pa.list_(pa.string()), [["mask"], [], None, ["glasses", "hand"]]),
    (pa.list_(pa.float64()), [[1.0, 2.5, 3.0, 4.0], None, (1, 2), np.array([0.5, 0.25])]),
    (pa.list_(pa.float64()), [None, [], None]),
]


@pytest.mark.parametrize("type_, values", CASES)
def test_arrays_equal_pyarrows_conversion(type_, values):
    built = python_array(list(values), type_)
    built.validate(full=True)
    assert built.type == type_
    assert built.equals(pa.array(values, type=type_))


def test_nan_stays_a_value_and_sliced_arrays_keep_their_nulls():
    built = python_array([float("nan"), None, 2.0] * 5, pa.float64())
    assert math.isnan(built[0].as_py()) and built[1].as_py() is None and built.null_count == 5
    assert built.slice(3, 4).to_pylist()[1] is None


@pytest.mark.parametrize(
    "type_, value",
    [
        (pa.int64(), 1.5),
        (pa.int64(), True),
        (pa.int64(), "3"),
        (pa.float64(), True),
        (pa.float64(), "0.5"),
        (pa.bool_(), 1),
        (pa.string(), 3),
        (pa.string(), b"bytes"),
        (pa.list_(pa.string()), "mask"),
        (pa.list_(pa.string()), [3]),
    ],
)
def test_a_value_of_another_type_is_refused(type_, value):
    with pytest.raises(TypeError, match="is not"):
        python_array([None, value], type_)


def test_an_int_past_int64_is_refused():
    with pytest.raises(OverflowError):
        python_array([2**63], pa.int64())


def test_scalars_and_flags():
    assert scalar("removed", pa.string()).equals(pa.scalar("removed"))
    assert scalar(0, pa.int64()).as_py() == 0 and scalar(None, pa.int64()).as_py() is None
    flags = np.array([True, False, True] * 7)
    assert bool_array(flags).equals(pa.array(flags))


def test_a_first_ingest_never_imports_pandas(tmp_path):
    """pandas takes about 0.17 s to import beyond numpy and pyarrow; a first ingest of a zip (no alignment) needs none."""
    import io
    import zipfile

    from PIL import Image

    with zipfile.ZipFile(tmp_path / "delivery.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            jpeg = io.BytesIO()
            Image.new("RGB", (40, 30), (i * 40, 90, 120)).save(jpeg, "JPEG")
            zf.writestr(f"happy/{i}.jpg", jpeg.getvalue())
    script = textwrap.dedent(
        f"""
        import sys
        from ferdata.ingest import ingest
        result = ingest({str(tmp_path / "ws")!r}, {str(tmp_path / "delivery.zip")!r}, dataset="imagefolder", align=False)
        assert result.rows == 3, result.rows
        print("pandas" in sys.modules)
        print(len(result.manifest.frame), "pandas" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "False"  # the manifest was built, checked and written without pandas
    assert out[1] == "3 True"  # and its frame is there when asked for

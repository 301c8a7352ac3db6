"""The machine a benchmark ran on, as its results record it (bench/common.py)."""

from __future__ import annotations

from bench.common import SIMD_LEVELS, machine, simd_level


def test_simd_level_is_the_widest_vector_instruction_set_the_cpu_has() -> None:
    # NumPy's OpenBLAS picks its kernels by it: the same seeds learn along other curves on a
    # machine of another level (bench/common.py), so results must say which they ran on.
    assert simd_level(["fpu", "sse4_2", "avx", "avx2", "fma"]) == "avx2"
    assert simd_level(["avx2", "avx512f", "avx512dq", "avx"]) == "avx512f"
    assert simd_level(["fpu", "sse2"]) == ""


def test_machine_records_its_simd_level() -> None:
    assert machine()["simd"] in {*SIMD_LEVELS, ""}

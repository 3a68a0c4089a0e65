"""The mixed-precision policy shared by the reference models (`reference_models.nets.autocast`, on `genbench.models.precision`): bf16 on CUDA,
on CPU only when a config opts in (`cpu_bf16`) and the CPU multiplies bf16 natively; recorded as `precision`."""

import pytest
import torch

from genbench.models import precision
from reference_models.nets import autocast, cpu_native_bf16, precision_label, uses_bf16


@pytest.fixture
def native(monkeypatch):
    """Force the CPU capability check to a value (it is cached, so clear the cache around the test)."""

    def set_to(value: bool):
        monkeypatch.setenv("GENBENCH_CPU_BF16", "1" if value else "0")
        cpu_native_bf16.cache_clear()

    yield set_to
    cpu_native_bf16.cache_clear()


def _matmul_dtype(ctx) -> torch.dtype:
    a = torch.randn(4, 4)
    with ctx:
        return (a @ a).dtype


def test_cpu_bf16_needs_both_opt_in_and_native_support(native):
    cpu = torch.device("cpu")
    native(True)
    assert uses_bf16(cpu, True, cpu_bf16=True)
    assert _matmul_dtype(autocast(cpu, True, cpu_bf16=True)) == torch.bfloat16
    assert not uses_bf16(cpu, True, cpu_bf16=False)  # not opted in
    assert not uses_bf16(cpu, False, cpu_bf16=True)  # mixed precision off
    assert _matmul_dtype(autocast(cpu, True, cpu_bf16=False)) == torch.float32
    native(False)  # a CPU without bf16 instructions: float32 even when opted in
    assert not uses_bf16(cpu, True, cpu_bf16=True)
    assert _matmul_dtype(autocast(cpu, True, cpu_bf16=True)) == torch.float32
    assert precision_label("cpu", True, True) == "float32"


def test_cuda_uses_bf16_when_enabled():
    assert uses_bf16(torch.device("cuda"), True) and precision_label("cuda", True) == "bf16-autocast"
    assert not uses_bf16(torch.device("cuda"), False)


def test_native_detection_reads_cpu_flags(monkeypatch, tmp_path):
    monkeypatch.delenv("GENBENCH_CPU_BF16", raising=False)
    fake = tmp_path / "cpuinfo"
    monkeypatch.setattr(precision, "Path", lambda p: fake if p == "/proc/cpuinfo" else precision.Path(p))
    try:
        fake.write_text("processor : 0\nflags\t\t: fpu sse avx2 avx512f\n")
        cpu_native_bf16.cache_clear()
        assert not cpu_native_bf16()
        fake.write_text("processor : 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
        cpu_native_bf16.cache_clear()
        assert cpu_native_bf16()
    finally:
        cpu_native_bf16.cache_clear()


def test_model_precision_follows_config_and_device(native):
    from genbench.data import get_dataset
    from reference_models import create_model

    native(True)
    info = get_dataset("ring8").info
    model = create_model("ddpm", info, "smoke")
    assert model.precision() == "float32"  # smoke: no CPU opt-in
    assert model.precision("cuda") == "bf16-autocast"
    model.config.cpu_bf16 = True
    assert model.precision() == "bf16-autocast"
    model.config.mixed_precision = False
    assert model.precision() == "float32" and model.precision("cuda") == "float32"

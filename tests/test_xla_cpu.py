"""jaxseg's XLA CPU flags: set on import unless the user set them, and accepted by XLA."""

import os
import subprocess
import sys

import pytest

from jaxseg import xla_cpu

FLAG = f"{xla_cpu.YNN_FUSION_FLAG}=-individual_convolution"


def test_adds_the_flag_to_the_users_flags(monkeypatch):
    monkeypatch.setattr(xla_cpu, "_jaxlib_version", lambda: "0.10.2")
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    xla_cpu.apply_defaults(environ)
    assert environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {FLAG}"
    empty = {}
    xla_cpu.apply_defaults(empty)
    assert empty["XLA_FLAGS"] == FLAG


@pytest.mark.parametrize(
    ("version", "flags"),
    [
        ("0.10.2", f"{xla_cpu.YNN_FUSION_FLAG}=dot"),  # The user's choice stays.
        ("0.11.0", ""),  # A jaxlib whose flag parser was not checked: XLA's defaults.
        ("", ""),  # No jaxlib installed.
    ],
)
def test_leaves_the_flags_alone(monkeypatch, version, flags):
    monkeypatch.setattr(xla_cpu, "_jaxlib_version", lambda: version)
    environ = {"XLA_FLAGS": flags}
    xla_cpu.apply_defaults(environ)
    assert environ == {"XLA_FLAGS": flags}


def test_the_installed_xla_runs_with_jaxsegs_flags():
    """XLA aborts the process on a flag value it does not know."""
    code = "import jaxseg, os, jax.numpy as jnp; print(os.environ['XLA_FLAGS'], jnp.ones(3).sum())"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = FLAG if xla_cpu._jaxlib_version().startswith("0.10.") else ""
    assert result.stdout.split() == [*expected.split(), "3.0"]

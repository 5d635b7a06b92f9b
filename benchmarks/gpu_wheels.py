"""The wheels benchmarks/gpu_check.sh needs on a GPU machine of this workplace, whose image
has torch and the scientific stack but not the workflow's tools (snakemake and its plug-ins,
jsonschema, torch-fidelity).  Run HERE (a machine with the project's venv and PyPI), before
the device call; it prints the ``pip download`` command (or runs it with ``--download``):

    python benchmarks/gpu_wheels.py --download        # → .whl/ (ignored by git via .git/info/exclude)

The list is the dependency closure of ``ROOTS`` as installed in this venv (the same versions),
less the packages the GPU image already has (``ON_IMAGE``, from the device notes).  Wheels for
CPython 3.12 on manylinux x86-64 (the image's Python).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

ROOTS = ("snakemake", "jsonschema", "torch-fidelity")
# the GPU image's packages (the device notes' list); never carried
ON_IMAGE = set(
    """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()
)
ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots=ROOTS) -> dict[str, str]:
    """{name: installed version} of ``roots`` and everything they need, less ``ON_IMAGE``."""
    need: dict[str, str] = {}
    todo = [norm(r) for r in roots]
    while todo:
        n = todo.pop()
        if n in need or n in ON_IMAGE:
            continue
        dist = md.distribution(n)
        need[n] = dist.version
        for req in dist.requires or []:
            r = Requirement(req)
            if r.marker is not None and not Marker(str(r.marker)).evaluate(ENV):
                continue
            todo.append(norm(r.name))
    return dict(sorted(need.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", default=".whl")
    ap.add_argument("--download", action="store_true", help="run pip download (else print the command)")
    args = ap.parse_args(argv)
    pins = [f"{n}=={v}" for n, v in closure().items()]
    plats = [a for n in (28, 27, 17) for a in ("--platform", f"manylinux_2_{n}_x86_64")]
    plats += ["--platform", "manylinux2014_x86_64", "--platform", "manylinux1_x86_64"]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        *plats,
        "-d",
        args.dest,
        *pins,
    ]
    print(f"# {len(pins)} packages: {' '.join(pins)}")
    if not args.download:
        print(" ".join(cmd))
        return 0
    Path(args.dest).mkdir(exist_ok=True)
    exclude = Path(".git/info/exclude")
    inside = not Path(args.dest).is_absolute() and ".." not in Path(args.dest).parts
    if inside and exclude.is_file() and f"/{args.dest.strip('/')}/" not in exclude.read_text().split():
        with exclude.open("a") as f:
            f.write(f"/{args.dest.strip('/')}/\n")
    rc = subprocess.call(cmd)
    if rc != 0:  # one by one; a package published only as a source archive is built into a wheel here
        rc = 0
        base = cmd[: cmd.index("-d") + 2]
        for pin in pins:
            if subprocess.call(base + [pin], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0:
                print(f"# {pin}: no wheel published; building one (pure Python)")
                r = subprocess.call(
                    [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", args.dest, pin]
                )
                rc = rc or r
    size = sum(p.stat().st_size for p in Path(args.dest).glob("*.whl"))
    print(
        f"# {args.dest}: {len(list(Path(args.dest).glob('*.whl')))} wheels, {size / 2**20:.1f} MiB "
        f"(the device tool carries at most 64 MiB with the working tree)"
    )
    return rc


if __name__ == "__main__":
    sys.exit(main())

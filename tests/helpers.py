"""What several test modules share: the planted data they train on, and small steps of fit."""
import json
import shutil

import pytest

from ctm_m3l.data.synthetic import planted_datasets
from ctm_m3l.training import FitLoop, bind


def start_fit(model, train, **loop_options):
    """What fit does before its first step: bind the model to ``train`` (build its network),
    make its loop and the data on the device."""
    bind(model, train)
    loop = FitLoop(model, **loop_options)
    return loop, loop.device_data(train)


VIEWS = ["en", "de", "image"]
K = 5


def prepare(n_train=800, n_test=200, image_share=1.0, seed=0):
    return planted_datasets(n_train, n_test, n_topics=K, image_share=image_share, seed=seed)


def resign(folder):
    """Rewrite a model folder's manifest to fit its files, as someone editing them on purpose would."""
    from ctm_m3l.persistence import _combined, sha256_file

    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    manifest["sha256"] = _combined(manifest["files"])
    path.write_text(json.dumps(manifest))


# Inductor's CPU backend compiles C++; without a compiler only the fallback can be tested.
HAS_CPP = any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def needs_cpp(test):
    """A test of compiled training: marked ``cpp``, skipped where no C++ compiler is found."""
    return pytest.mark.cpp(pytest.mark.skipif(not HAS_CPP, reason="torch.compile on CPU needs a C++ compiler")(test))


def in_a_fresh_python(function, *args, timeout=900, checked_marker=None):
    """Run ``function(*args)``, a module-level function of a test module (``args`` plain values
    such as strings), in a new Python process.  A crash in native code (a segmentation fault of
    a runtime such as OpenVINO) then fails the one test that met it, with the child's output and
    the signal, instead of ending the whole test session.

    ``checked_marker``: a line the function prints once every check has passed.  A crash after
    it (while native objects are freed) is reported as an expected failure naming the signal,
    listed in the run's summary, not as a failed check."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    module = sys.modules[function.__module__]
    code = (f"import importlib.util, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"spec = importlib.util.spec_from_file_location('isolated_test', {module.__file__!r}); "
            f"module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
            f"module.{function.__name__}(*{args!r})")
    child = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True,
                           timeout=timeout)
    if child.returncode != 0:
        how = (f"died of {signal.Signals(-child.returncode).name}" if child.returncode < 0
               else f"exited with {child.returncode}")
        if child.returncode < 0 and checked_marker is not None and checked_marker in child.stdout.splitlines():
            pytest.xfail(f"every check passed, then {function.__name__} {how} while freeing native objects; "
                         f"its output ends: {(child.stdout + child.stderr)[-1500:]}")
        pytest.fail(f"{function.__name__}{args!r} {how} in its own process; its output ends:\n"
                    f"{(child.stdout + child.stderr)[-6000:]}", pytrace=False)

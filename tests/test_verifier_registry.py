"""get_verifier: registered names, import paths, the `rlvr.verifiers` entry point, errors and kwargs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.verifier_fixtures import EchoVerifier, KwargsVerifier
from verifiers import Verifier, get_verifier, register_verifier, registered_names


@register_verifier("test_registry_echo")
class RegisteredEcho(EchoVerifier):
    pass


def test_registered_name_builds_a_fresh_instance() -> None:
    first, second = get_verifier("test_registry_echo"), get_verifier("test_registry_echo")
    assert isinstance(first, RegisteredEcho) and first is not second
    assert "test_registry_echo" in registered_names()
    assert first.verify("4", "4").status == "ok"


def test_builtins_are_registered_without_importing_them_first() -> None:
    assert {"exact", "numeric", "math", "choice"} <= set(registered_names())
    assert get_verifier("math").verify("so \\boxed{\\frac12}", "0.5").status == "ok"


def test_duplicate_name_is_rejected_but_reregistering_the_same_class_is_not() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_verifier("test_registry_echo")(EchoVerifier)
    assert register_verifier("test_registry_echo")(RegisteredEcho) is RegisteredEcho


def test_unknown_name_suggests_the_closest_valid_one() -> None:
    with pytest.raises(ValueError, match="Did you mean 'test_registry_echo'"):
        get_verifier("test_registry_ecko")


def test_import_path_to_a_class_and_kwargs_reach_the_constructor() -> None:
    verifier = get_verifier("tests.verifier_fixtures:KwargsVerifier", flavour="salty", reward_wrong=0.0)
    assert isinstance(verifier, KwargsVerifier)
    assert (verifier.flavour, verifier.reward_wrong) == ("salty", 0.0)
    assert verifier.verify("a", "b").extracted == "salty"


def test_import_path_to_a_module_in_a_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tmp_dir_verifiers.py").write_text(
        textwrap.dedent(
            """
            from verifiers import Verifier

            class Odd(Verifier):
                def check(self, response, reference, sample):
                    return ("ok" if int(response) % 2 else "wrong"), response, None

            odd = Odd(reward_wrong=0.0)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert get_verifier("tmp_dir_verifiers:Odd").verify("3", "").status == "ok"
    instance = get_verifier("tmp_dir_verifiers:odd")
    assert instance.verify("2", "").reward == 0.0
    with pytest.raises(TypeError, match="instance"):
        get_verifier("tmp_dir_verifiers:odd", reward_wrong=1.0)


def test_bad_import_paths_say_what_is_missing() -> None:
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        get_verifier("no_such_module_xyz:Thing")
    with pytest.raises(ValueError, match="has no attribute 'Nope'"):
        get_verifier("tests.verifier_fixtures:Nope")


def test_verifier_base_requires_check() -> None:
    with pytest.raises(NotImplementedError):
        Verifier().verify("a", "b")


def test_entry_point_of_an_installed_distribution_is_found(tmp_path: Path) -> None:
    # The layout pip leaves in site-packages: the module and a dist-info folder declaring the entry point.
    (tmp_path / "my_verifiers_pkg.py").write_text(
        textwrap.dedent(
            """
            from verifiers import Verifier

            class AlwaysRight(Verifier):
                def check(self, response, reference, sample):
                    return "ok", response, "from an entry point"
            """
        )
    )
    dist_info = tmp_path / "my_verifiers_pkg-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-verifiers-pkg\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(
        "[rlvr.verifiers]\nalways_right = my_verifiers_pkg:AlwaysRight\n"
    )
    script = textwrap.dedent(
        """
        import json
        from verifiers import VerifierPool, get_verifier
        from verifiers.registry import entry_point_names

        if __name__ == "__main__":
            result = get_verifier("always_right", reward_correct=3.0).verify("42", "7")
            # The pool's worker processes resolve the name on their own.
            with VerifierPool("always_right", num_workers=1, verifier_kwargs={"reward_correct": 2.0}) as pool:
                pooled = pool.verify("x", "y")
            report = {"result": result.to_dict(), "pooled": pooled.to_dict(), "names": entry_point_names()}
            print(json.dumps(report))
        """
    )
    (tmp_path / "use_entry_point.py").write_text(script)
    python_path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path}
    done = subprocess.run(
        [sys.executable, "use_entry_point.py"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "always_right" in report["names"]
    assert report["result"] == {
        "correct": True,
        "reward": 3.0,
        "status": "ok",
        "extracted": "42",
        "detail": "from an entry point",
    }
    assert report["pooled"]["status"] == "ok" and report["pooled"]["reward"] == 2.0
    # Nothing leaked into this process: without the dist-info folder on its path the name is unknown.
    with pytest.raises(ValueError, match="unknown verifier 'always_right'"):
        get_verifier("always_right")

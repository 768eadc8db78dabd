"""Reading configuration files: what makes a configuration unreadable (never smaller), and
the bounds on size, documents, nesting, aliases and time."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from extauthz.config.documents import config_files
from extauthz.config.limits import ConfigLimits
from extauthz.config.parse import ConfigError, load_config, parse_documents
from tests.support.hostile_yaml import alias_bomb

POLICY = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: foo}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: [/admin]}
"""


def directory_with(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name.replace("_", ".")).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "no YAML document", id="empty-file"),
        pytest.param("# TODO\n---\n", "no YAML document", id="comment-and-separator"),
        pytest.param("---\n---\n...\n", "no YAML document", id="only-separators"),
        pytest.param("\n\n   \n", "no YAML document", id="blank-lines"),
    ],
)  # fmt: skip
def test_a_file_without_documents_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "other.yaml").write_text(POLICY)
    (tmp_path / "policy.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        load_config([tmp_path])
    assert str(tmp_path / "policy.yaml") in str(error.value)


def test_a_dangling_symlink_in_a_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POLICY)
    (tmp_path / "b.yaml").symlink_to("gone.yaml")
    with pytest.raises(ConfigError, match=r"b\.yaml: broken symbolic link"):
        load_config([tmp_path])


def test_a_looping_symlink_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").symlink_to("loop.yaml")
    with pytest.raises(ConfigError, match="broken symbolic link"):
        config_files([tmp_path])
    with pytest.raises(ConfigError, match="broken symbolic link"):
        config_files([tmp_path / "loop.yaml"])


def test_a_configmap_whose_data_link_dangles_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "..data").symlink_to("..2026_12_01_gone")
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    with pytest.raises(ConfigError, match="broken symbolic link"):
        load_config([tmp_path])


def test_an_empty_directory_needs_allow_empty(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml.bak").write_text(POLICY)  # renamed away: not read
    with pytest.raises(ConfigError, match=r"no \*\.yaml or \*\.yml file in this directory"):
        load_config([tmp_path])
    assert load_config([tmp_path], limits=ConfigLimits(allow_empty=True)).digest


def test_a_configuration_without_resources_needs_allow_empty(tmp_path: Path) -> None:
    config = tmp_path / "other.yaml"
    config.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(ConfigError, match="--allow-empty-config"):
        load_config([config])
    loaded = load_config([config], limits=ConfigLimits(allow_empty=True))
    assert loaded.authorization_policies == () and len(loaded.warnings) == 1


def test_removing_one_file_of_several_is_a_legitimate_change(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POLICY)
    (tmp_path / "b.yaml").write_text(POLICY.replace("name: deny", "name: other"))
    assert len(load_config([tmp_path]).authorization_policies) == 2
    (tmp_path / "b.yaml").unlink()
    assert len(load_config([tmp_path]).authorization_policies) == 1


def test_the_digest_follows_content_not_time(tmp_path: Path) -> None:
    config = tmp_path / "a.yaml"
    config.write_text(POLICY)
    first = load_config([config]).digest
    os.utime(config, (time.time() + 10, time.time() + 10))
    assert load_config([config]).digest == first
    config.write_text(POLICY.replace("/admin", "/root"))
    assert load_config([config]).digest != first


def test_not_utf8_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "a.yaml"
    config.write_bytes(POLICY.encode() + b"# \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config([config])


# -- bounds -----------------------------------------------------------------------------


def test_aliases_are_refused_before_they_expand() -> None:
    started = time.process_time()
    with pytest.raises(ConfigError, match=r"bomb\.yaml:5: YAML alias \*op is not accepted"):
        parse_documents(alias_bomb(), "bomb.yaml")
    assert time.process_time() - started < 5  # generous: the point is it returns at all


def test_a_merge_key_is_an_alias_too() -> None:
    text = "base: &b {action: DENY}\nspec:\n  <<: *b\n"
    with pytest.raises(ConfigError, match="YAML alias"):
        parse_documents(text, "merge.yaml")


def test_anchors_without_aliases_are_fine() -> None:
    config = parse_documents(POLICY.replace("spec:", "spec: &s"), "anchor.yaml")
    assert len(config.authorization_policies) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[" * 60 + "]" * 60, "nested deeper than 50 levels", id="flow-60"),
        # libyaml stops at 1,000 levels itself, in its own words; both refuse, fast.
        pytest.param("[" * 3000 + "]" * 3000, r"nested deeper than 50 levels|exceeded maximum nesting depth", id="flow-3000"),
        pytest.param("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)), "nested deeper than 50 levels", id="block-60"),
    ],
)  # fmt: skip
def test_deep_nesting_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_documents(text, "deep.yaml")


def test_nesting_limit_is_configurable() -> None:
    with pytest.raises(ConfigError, match="nested deeper than 5 levels"):
        parse_documents(POLICY, "p.yaml", limits=ConfigLimits(max_depth=5))
    assert parse_documents(POLICY, "p.yaml", limits=ConfigLimits(max_depth=10))


def test_too_many_documents_stop_reading_early(tmp_path: Path) -> None:
    config = tmp_path / "many.yaml"
    config.write_text(POLICY + "---\n" * 100_000)
    started = time.process_time()
    with pytest.raises(ConfigError, match="more than 5000 YAML documents"):
        load_config([config])
    assert time.process_time() - started < 10


def test_the_document_limit_counts_every_file(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.yaml").write_text(POLICY.replace("name: deny", f"name: {name}"))
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: more than 2 YAML documents"):
        load_config([tmp_path], limits=ConfigLimits(max_documents=2))


def test_the_byte_limit_counts_every_file_and_reads_no_further(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POLICY)
    (tmp_path / "b.yaml").write_text(POLICY.replace("name: deny", "name: b"))
    limit = len(POLICY) + 10
    with pytest.raises(ConfigError, match=rf"b\.yaml: the configuration is larger than {limit}"):
        load_config([tmp_path], limits=ConfigLimits(max_bytes=limit))


def test_a_big_file_is_refused_by_size(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w") as out:
        out.write(POLICY)
        out.write("# " + "x" * 1000 + "\n")
        out.truncate(50 << 20)  # 50 MiB, mostly NUL bytes past the comment: never parsed
    started = time.process_time()
    with pytest.raises(ConfigError, match="larger than 8388608 bytes"):
        load_config([big])
    assert time.process_time() - started < 5


def test_loading_past_the_deadline_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "slow.yaml"
    # Many small documents: the clock is looked at between documents and every 512 nodes.
    config.write_text("---\n".join([POLICY] * 400))
    with pytest.raises(ConfigError, match=r"loading took longer than 1e-06s"):
        load_config([config], limits=ConfigLimits(load_timeout_seconds=1e-6))


def test_too_many_values_are_refused_before_anything_is_built(tmp_path: Path) -> None:
    # 7 MB of dense paths is within the byte limit but millions of values: reading and
    # compiling it all took 33 s and 670 MB.
    config = tmp_path / "dense.yaml"
    config.write_text(POLICY.replace("/admin", ", ".join(f"/p{i}" for i in range(700_000))))
    started = time.process_time()
    with pytest.raises(ConfigError, match=r"dense\.yaml:8: more than 250000 YAML values"):
        load_config([config])
    assert time.process_time() - started < 10
    with pytest.raises(ConfigError, match="more than 10 YAML values"):
        parse_documents(POLICY, "p.yaml", limits=ConfigLimits(max_nodes=10))
    assert parse_documents(POLICY, "p.yaml", limits=ConfigLimits(max_nodes=30))

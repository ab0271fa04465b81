"""Building an assistant from files and gin: the zero-model system over a pack, the index's
domain in refusals, the gin names of the parts default.gin binds."""

from __future__ import annotations

import gin
import pytest
from conftest import write_tiny_pack
from system_helpers import domain_pack, passage_question

from vertjax import errors, gin_utils
from vertjax.system import build


def test_offline_assistant_answers_over_a_pack(tmp_path):
    pack = write_tiny_pack(tmp_path / "pack")
    bot = build.offline_assistant(index_dir=tmp_path / "index", pack_dir=pack)
    assert bot.answer(passage_question(40)).sentences


def test_refusals_name_the_domain_of_the_index(tmp_path):
    """The domain comes from the pack through the index, never from a hard-coded string; an
    index that records none (an older pack) gets a neutral wording."""
    pack = domain_pack(tmp_path, domain_name="SQLite")
    bot = build.offline_assistant(index_dir=tmp_path / "i", pack_dir=pack, min_top_score=1e6)
    assert build.index_domain(tmp_path / "i") == "SQLite"
    assert build.index_domain(tmp_path / "i", name="our manual") == "our manual"  # --gin.DOMAIN
    assert bot.answer("Who won the World Cup?").answer.startswith(
        "Nothing in the documents about SQLite answers this question"
    )
    old = build.offline_assistant(
        index_dir=tmp_path / "old", pack_dir=write_tiny_pack(tmp_path / "tiny"), min_top_score=1e6
    )
    assert "about the indexed documents answers" in old.answer("Who won the World Cup?").answer
    named = build.offline_assistant(
        index_dir=tmp_path / "i", domain="our manual", min_top_score=1e6
    )
    assert "about our manual answers" in named.answer("Who won the World Cup?").answer


def test_default_gin_names_the_parts_build_dot_name():
    """The threshold flag README documents reaches `load_ood_classifier`; the name the parts had
    before they left `assistant` is one clear error."""
    flag = "build.load_ood_classifier.threshold=0.7"
    gin_utils.parse_gin(gin_files=["system/default.gin"], gin_bindings=["INDEX_DIR='x'", flag])
    assert gin.get_bindings(build.load_ood_classifier)["threshold"] == 0.7
    with pytest.raises(errors.ConfigError, match="assistant.load_ood_classifier"):
        gin_utils.parse_gin(
            gin_files=["system/default.gin"],
            gin_bindings=["INDEX_DIR='x'", f"assistant.{flag[6:]}"],
        )

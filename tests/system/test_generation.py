"""Answer generators: extractive (deterministic, cited), backend prompt parsing, T5 plumbing."""

from __future__ import annotations

import re

import jax
import pytest

from vertjax.consistency import citations
from vertjax.generators.t5 import T5Client
from vertjax.models import encoder_decoder, t5
from vertjax.retrieval.types import Hit
from vertjax.system import generation

PASSAGES = [
    Hit(1, "p1", "Replication", 3.0, "The replica copies the wal record. It sleeps at night."),
    Hit(
        2,
        "p2",
        "Storage",
        2.0,
        "Tables live on disk.\n\nThe vacuum process compresses old pages quickly.",
    ),
    Hit(3, "p3", "Cooking", 1.0, "Boil the eggs for six minutes before peeling them."),
]


def test_extractive_answer_cites_the_passage_each_sentence_comes_from():
    gen = generation.ExtractiveGenerator(max_sentences=2)
    sentences = gen.generate("What does the vacuum process compress?", PASSAGES)
    assert sentences[0] == {
        "text": "The vacuum process compresses old pages quickly.",
        "citations": [2],
    }
    for s in sentences:
        assert s["text"] in PASSAGES[s["citations"][0] - 1].text
    assert gen.generate("What does the vacuum process compress?", PASSAGES) == sentences
    assert gen.generate("Which colour is the sky?", PASSAGES) == []


def test_passage_sentences_skip_rules_code_and_fragments():
    text = "Title\n*****\n\n>>> x = 1\nThe parser reads tokens one by one.\n\nok."
    assert generation.passage_sentences(text) == ["The parser reads tokens one by one."]


def test_quote_source_replaces_a_sentence_with_its_cited_passage_text():
    passages = [{"title": p.title, "text": p.text} for p in PASSAGES]
    new = generation.quote_source(
        {"text": "The replica deletes the wal record.", "citations": [1]}, passages, {}
    )
    assert new == {"text": "The replica copies the wal record.", "citations": [1]}
    assert generation.quote_source({"text": "x", "citations": []}, passages, {}) is None


class _Echo:
    name = "fake"

    def __init__(self, reply: str):
        self.reply, self.prompts = reply, []

    def generate(self, prompts, *, max_tokens, temperature, seed):
        self.prompts += list(prompts)
        return [self.reply] * len(prompts)


def test_backend_generator_numbers_passages_and_parses_citations():
    backend = _Echo("Old pages are compressed [2]. Replicas copy WAL [1][7].")
    gen = generation.BackendAnswerGenerator(backend)
    sentences = gen.generate("What happens to old pages?", PASSAGES)
    assert sentences == [
        {"text": "Old pages are compressed.", "citations": [2]},
        {"text": "Replicas copy WAL.", "citations": [1]},  # [7] names no passage
    ]
    assert "[2] Storage | Tables live on disk." in backend.prompts[0]
    assert backend.prompts[0].rstrip().endswith("Question: What happens to old pages?\nAnswer:")
    assert "about the indexed documents" in backend.prompts[0]  # no domain given


def test_backend_prompt_names_the_domain():
    backend = _Echo("Old pages are compressed [2].")
    generation.BackendAnswerGenerator(backend, domain="SQLite").generate("Why?", PASSAGES)
    assert backend.prompts[0].startswith("Answer questions about SQLite")


def test_backend_prompt_lists_passages_in_order_with_the_last_nearest_the_question():
    backend = _Echo("Old pages are compressed [2].")
    generation.BackendAnswerGenerator(backend).generate("Why?", PASSAGES)
    prompt = backend.prompts[0]
    positions = [prompt.index(f"[{i}] {p.title} |") for i, p in enumerate(PASSAGES, 1)]
    assert positions == sorted(positions)
    assert prompt[positions[-1] :].count("\n") == 2  # the last passage, then the question line


def test_answer_text_strips_what_small_llms_add_around_the_answer():
    reply = (
        "Question: How do I read a file?\nAnswer: Loop over the file object [3].\n```python\n"
        "for line in f: pass\n```\nIt is fast [3].\n\nQuestion: What is finally?\n"
        "Answer: A block that always runs."
    )
    assert generation.answer_text(reply) == "Loop over the file object [3].\n \nIt is fast [3]."


def test_answer_text_reads_list_items_as_sentences_and_drops_answer_lead_ins():
    reply = (
        "The answer to your question is:\n\nHere is how:\n1. Open the file [1]\n2. Loop over it."
    )
    assert generation.answer_text(reply) == "Here is how:\nOpen the file [1].\nLoop over it."
    parsed = citations.parse_answer(generation.answer_text(reply), num_passages=2)
    assert parsed["sentences"] == [
        {"text": "Here is how: Open the file.", "citations": [1]},
        {"text": "Loop over it.", "citations": []},
    ]


def test_backend_generator_drops_sentences_copied_from_the_prompts_example():
    gen = generation.BackendAnswerGenerator(_Echo("The library opens at 9 am. Pages compress [2]."))
    assert gen.generate("Why?", PASSAGES) == [{"text": "Pages compress.", "citations": [2]}]


def test_answer_text_drops_a_sentence_cut_at_max_tokens():
    cut = "Use json.dumps [2]. Pass sort_keys=True to sort the"
    assert generation.answer_text(cut, truncated=True) == "Use json.dumps [2]."
    assert generation.answer_text(cut) == cut  # not cut: kept as written
    assert generation.answer_text("Use json.dumps [2]", truncated=True) == "Use json.dumps [2]"
    assert generation.answer_text("Pass sort_keys=True to", truncated=True) == ""


class _Truncating(_Echo):
    """A backend with `complete`, whose reply hit max_tokens."""

    def complete(self, prompts, *, max_tokens, temperature, seed):
        from vertjax.generators.openai_chat import Completion

        return [
            Completion(t, "length")
            for t in self.generate(
                prompts, max_tokens=max_tokens, temperature=temperature, seed=seed
            )
        ]


@pytest.mark.parametrize(
    "reply",
    [
        "Old pages are compressed [2]. Then the",
        "1. Old pages are compressed [2]\n2. Then the",  # cut in a list item, which has no stop
        "- Old pages are compressed [2].\n- Then the",
    ],
)
def test_backend_generator_drops_the_unfinished_sentence_of_a_truncated_reply(reply):
    gen = generation.BackendAnswerGenerator(_Truncating(reply))
    assert gen.generate("What happens to old pages?", PASSAGES) == [
        {"text": "Old pages are compressed.", "citations": [2]}
    ]
    assert gen.last_text.endswith("Then the")


class _Streaming(_Truncating):
    """A backend that also streams: `reply` three characters a delta, then `finish`."""

    def __init__(self, reply: str, finish: str):
        super().__init__(reply)
        self.finish, self.sent = finish, 0

    def complete(self, prompts, **options):
        from vertjax.generators.openai_chat import Completion

        return [Completion(t, self.finish) for t in self.generate(prompts, **options)]

    def stream(self, prompt, *, max_tokens, temperature, seed):
        from vertjax.generators.openai_chat import Completion

        self.prompts.append(prompt)
        for start in range(0, len(self.reply), 3):
            self.sent = start + 3
            yield Completion(self.reply[start : start + 3])
        yield Completion("", self.finish)


@pytest.mark.parametrize(
    ("reply", "finish"),
    [
        ("Old pages are compressed [2]. Replicas copy WAL [1][7].", "stop"),
        (
            "Question: How do I read a file?\nAnswer: Loop over the file object [3].\n```python\n"
            "for line in f: pass\n```\nIt is fast [3].\n\nQuestion: What is finally?\nAnswer: No.",
            "stop",
        ),
        ("The answer to your question is:\n\nHere is how:\n1. Open it [1]\n2. Loop over it.", None),
        ("The library opens at 9 am. Pages compress [2]. (See [1, 2].) The", "length"),
        ("Old pages are compressed. [Passage 2] Then the", "length"),
        ("Steps:\n1. Open the file [1]\n2. Loop over the li", "length"),
    ],
)
def test_backend_stream_gives_generates_sentences_each_once_the_next_has_begun(reply, finish):
    backend = _Streaming(reply, finish)
    gen = generation.BackendAnswerGenerator(backend)
    whole = gen.generate("What happens to old pages?", PASSAGES)
    assert whole
    streamed, arrived = [], []
    for sentence in gen.stream("What happens to old pages?", PASSAGES):
        streamed.append(sentence)
        arrived.append(backend.sent)
    assert streamed == whole and gen.last_text == reply
    assert backend.prompts[0] == backend.prompts[1]  # the same prompt either way
    assert arrived[0] < len(reply)  # the first sentence came before the reply ended


def test_backend_stream_yields_a_sentence_when_the_next_one_begins():
    reply = "Old pages are compressed [2]. Replicas copy WAL [1]."
    backend = _Streaming(reply, "stop")
    stream = generation.BackendAnswerGenerator(backend).stream("Why?", PASSAGES)
    assert next(stream) == {"text": "Old pages are compressed.", "citations": [2]}
    assert reply.index("R") < backend.sent <= reply.index("R") + 3
    assert list(stream) == [{"text": "Replicas copy WAL.", "citations": [1]}]
    plain = generation.BackendAnswerGenerator(_Echo(reply))  # a backend that cannot stream
    assert list(plain.stream("Why?", PASSAGES)) == plain.generate("Why?", PASSAGES)
    truncated = generation.BackendAnswerGenerator(_Truncating("Old pages compress. [Passage 2] X"))
    assert truncated.generate("Why?", PASSAGES) == [
        {"text": "Old pages compress.", "citations": [2]}
    ]


class _CharVocab:
    """Characters as ids 2..65 (no SentencePiece/TensorFlow needed for plumbing)."""

    eos_id = 1
    vocab_size = 66

    def encode(self, text):
        return [2 + ord(c) % 64 for c in text]

    def decode(self, ids):
        return "".join(chr(32 + (i - 2) % 64) for i in ids if i > 1)


def test_t5_generator_reference_decoding_matches_plain_greedy():
    vocabulary = _CharVocab()
    config = t5.T5Config(
        vocab_size=vocabulary.vocab_size,
        emb_dim=32,
        num_heads=2,
        head_dim=16,
        mlp_dim=64,
        num_encoder_layers=1,
        num_decoder_layers=1,
    )
    model = encoder_decoder.EncoderDecoderModel(config)
    params = model.init_params(jax.random.key(0))
    options = {"max_decode_length": 12, "max_input_length": 128}
    client = T5Client(model, params, vocabulary)
    fast = generation.T5AnswerGenerator(client, **options)
    plain = generation.T5AnswerGenerator(client, reference_decoding=False, **options)
    question = "What does the vacuum process compress?"
    answer = fast.generate(question, PASSAGES)
    assert answer == plain.generate(question, PASSAGES)
    assert 1 <= fast.last_stats["forward_passes"] <= options["max_decode_length"]
    assert all(1 <= c <= len(PASSAGES) for s in answer for c in s["citations"])


def test_t5_generator_refuses_a_vocab_bigger_than_the_model(tmp_path, tiny_vocab):
    from conftest import save_tiny_t5

    from vertjax import errors

    save_tiny_t5(tmp_path / "run", vocab_size=350)  # the tiny vocab: 300 pieces + 100 extra ids
    expected = f"vocab {tiny_vocab} has 400 ids but the model in {tmp_path / 'run'} only 350"
    with pytest.raises(errors.ConfigError, match=re.escape(expected)):
        generation.T5AnswerGenerator.from_run_dir(tmp_path / "run", tiny_vocab)


def test_bad_settings_are_config_errors():
    from vertjax import errors

    with pytest.raises(errors.ConfigError):
        generation.ExtractiveGenerator(max_sentences=0)
    with pytest.raises(errors.ConfigError):
        generation.BackendAnswerGenerator(_Echo(""), prompt="no fields")


def test_relevance_is_high_for_an_on_topic_sentence_and_low_for_an_off_topic_one():
    """The share of the question's IDF-weighted content words a sentence (and its title)
    covers: what an extracted sentence's NLI verdict (it entails itself) cannot say."""
    relevance = generation.QuestionRelevance("What does the vacuum process compress?", PASSAGES)
    on_topic = relevance("The vacuum process compresses old pages quickly.", "Storage")
    off_topic = relevance("The replica copies the wal record.", "Replication")
    assert on_topic > 0.8 and off_topic == 0.0
    assert relevance("Boil the eggs.", "Vacuum") > 0.0  # the passage title counts
    assert 0.0 <= relevance("It sleeps at night.") <= 1.0
    cup = generation.QuestionRelevance("Who won the 2018 world cup?", PASSAGES)
    assert cup("The replica copies the world record.") < 0.5  # unseen words weigh the most


@pytest.mark.parametrize(
    "question, title, text, expected",
    [
        pytest.param(
            "What is WAL mode?",
            "Journals",
            "Many busy servers switch the journal to WAL mode at start-up for speed. "
            "WAL mode is a journaling method that appends changes to a separate log file.",
            "WAL mode is a journaling method",
            id="what-is-prefers-the-definition-over-a-mention",
        ),
        pytest.param(
            "How do I compress log files?",
            "Compression",
            "Compressed archives of the log files are smaller on disk. "
            "Use the gzip option to compress archives of the log files.",
            "Use the gzip option",
            id="how-to-prefers-the-instruction-with-the-asked-verb",
        ),
        pytest.param(
            "Can I backup a live database?",
            "Index",
            "Backup → The Backup Interface | Online Backup | Hot Copies Of A Live Database. "
            "The backup call copies a live database into another file page by page.",
            "The backup call copies",
            id="navigation-sentences-count-half",
        ),
    ],
)
def test_question_form_cues_pick_the_answering_sentence(question, title, text, expected):
    [first] = generation.ExtractiveGenerator(max_sentences=1).generate(
        question, [Hit(1, "p1", title, 1.0, text)]
    )
    assert first["text"].startswith(expected)

"""Tokenizer interface: char vocabulary, HF tokenizer.json, sentencepiece, templates."""

import json
import string

import numpy as np
import pytest
import sentencepiece as spm
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from rewardjax.tokenizers import (
    CharTokenizer,
    HFTokenizer,
    SentencePieceTokenizer,
    TokenizerError,
    check_vocab,
    load_tokenizer,
)

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "Q: 7+5-3+8\n7+5=12\n12-3=9\n9+8=17\nA: 17",
    "hello world, hello tokenizer, hello again",
    "numbers 0 1 2 3 4 5 6 7 8 9 and symbols + - * / = :",
] * 20

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# A Qwen-style template: system/user/assistant turns between <|im_start|> and <|im_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _bpe_dir(tmp_path, *, config=True, template=True, corpus=CORPUS, vocab_size=300):
    """A byte-level BPE tokenizer.json (Qwen-style specials) trained on `corpus`, in tmp_path."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tmp_path.mkdir(parents=True, exist_ok=True)
    tok.save(str(tmp_path / "tokenizer.json"))
    if config:
        cfg = {"eos_token": "<|im_end|>", "pad_token": {"content": "<|endoftext|>"}}
        if template:
            cfg["chat_template"] = CHAT_TEMPLATE
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    return tmp_path, tok


def _sp_model(tmp_path):
    prefix = str(tmp_path / "sp")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_prefix=prefix,
        vocab_size=64,
        model_type="bpe",
        character_coverage=1.0,
        pad_id=3,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return prefix + ".model"


# ---------------------------------------------------------------- char


def test_char_vocabulary_layout():
    tok = CharTokenizer()
    # 3 specials + newline + 95 printable characters (32..126) = 99.
    assert tok.vocab_size == 99
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.encode("\n") == [3]
    assert tok.encode(" ") == [4]  # space is chr(32), first after newline
    assert tok.encode("~") == [98]  # chr(126) = 4 + 94
    assert tok.encode("A", add_bos=True) == [1, 4 + ord("A") - 32]
    printable = set(string.printable) - set("\t\r\x0b\x0c")
    assert len(printable) == 96  # newline + 95


def test_char_round_trip_and_specials():
    tok = CharTokenizer()
    text = "Q: 7+5-3+8\n7+5=12\n12-3=9\n9+8=17\nA: 17"
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    with_specials = [1, *ids, 2, 0, 0]
    assert tok.decode(with_specials) == text
    assert tok.decode(with_specials, skip_special=False) == "<bos>" + text + "<eos><pad><pad>"
    # Ids past the vocabulary (a padded model vocabulary) are dropped, or an error.
    assert tok.decode([*ids, 120]) == text
    with pytest.raises(TokenizerError, match="token id 120"):
        tok.decode([120], skip_special=False)


def test_char_unknown_character_names_it():
    with pytest.raises(TokenizerError, match=r"'é' \(U\+00E9\) at position 2"):
        CharTokenizer().encode("abé")
    with pytest.raises(TokenizerError, match=r"'\\t'"):
        CharTokenizer().encode("a\tb")


def test_char_batch_encode_left_and_right_padding():
    tok = CharTokenizer()
    # "ab" -> [d(a), d(b)]; "c" -> [d(c)]; d(x) = ord(x) - 32 + 4.
    a, b, c = (ord(x) - 28 for x in "abc")
    ids, mask = tok.batch_encode(["ab", "c"])
    np.testing.assert_array_equal(ids, [[a, b], [0, c]])
    np.testing.assert_array_equal(mask, [[1, 1], [0, 1]])
    assert ids.dtype == np.int32 and mask.dtype == np.float32
    ids, mask = tok.batch_encode(["ab", "c"], max_length=4, left_pad=False, add_bos=True)
    np.testing.assert_array_equal(ids, [[1, a, b, 0], [1, c, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 1, 0, 0]])
    with pytest.raises(TokenizerError, match="row 1 has 3 tokens, more than max_length=2"):
        tok.batch_encode(["ab", "abc"], max_length=2)
    with pytest.raises(TokenizerError, match="empty batch"):
        tok.batch_encode([])


def test_char_has_no_chat_template():
    with pytest.raises(TokenizerError, match="char: no chat template"):
        load_tokenizer("char").apply_chat_template([{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------- HF tokenizer.json


def test_hf_tokenizer_ids_round_trip_and_padding(tmp_path):
    directory, raw = _bpe_dir(tmp_path / "ckpt")
    tok = load_tokenizer(directory)
    assert isinstance(tok, HFTokenizer)
    assert tok.eos_id == raw.token_to_id("<|im_end|>") == 2
    assert tok.pad_id == raw.token_to_id("<|endoftext|>") == 0
    assert tok.bos_id is None
    assert tok.stop_ids == (tok.eos_id,)
    assert tok.vocab_size == raw.get_vocab_size()
    text = "hello world, 7+5=12\nA: 17"
    ids = tok.encode(text)
    assert ids == raw.encode(text).ids
    assert tok.decode(ids) == text
    # Special tokens in the text are parsed as single ids and dropped by decode.
    special = tok.encode("hi<|im_end|>")
    assert special[-1] == tok.eos_id
    assert tok.decode(special) == "hi"
    assert tok.decode(special, skip_special=False) == "hi<|im_end|>"
    batch, mask = tok.batch_encode(["hello", "hello world"])
    short = len(tok.encode("hello"))
    long = len(tok.encode("hello world"))
    assert batch.shape == (2, long)
    assert (batch[0, : long - short] == tok.pad_id).all()
    assert batch[0, long - short :].tolist() == tok.encode("hello")
    assert mask.sum(1).tolist() == [short, long]
    with pytest.raises(TokenizerError, match="no bos"):
        tok.encode("x", add_bos=True)


def test_hf_tokenizer_file_path_without_config_guesses_eos(tmp_path):
    directory, raw = _bpe_dir(tmp_path / "bare", config=False)
    tok = load_tokenizer(directory / "tokenizer.json")
    # No config: the first known eos name present, <|endoftext|> (id 0), also pads.
    assert tok.eos_id == tok.pad_id == raw.token_to_id("<|endoftext|>")


def test_hf_generation_config_adds_stop_ids(tmp_path):
    directory, _ = _bpe_dir(tmp_path / "gen")
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    tok = load_tokenizer(directory)
    assert tok.stop_ids == (2, 0)


def test_chat_template_rendered(tmp_path):
    directory, _ = _bpe_dir(tmp_path / "chat")
    tok = load_tokenizer(directory)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "7+5?"},
    ]
    expected = (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n7+5?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert tok.apply_chat_template(messages) == expected
    no_prompt = tok.apply_chat_template(messages, add_generation_prompt=False)
    assert no_prompt == expected[: -len("<|im_start|>assistant\n")]


def test_chat_template_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    directory, _ = _bpe_dir(tmp_path / "parity")
    # A template using bos/eos names, trim_blocks and raise_exception like real ones.
    template = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}\n"
        "{% for m in messages %}\n"
        "  {{ m['role'] }}: {{ m['content'] }}{{ eos_token }}\n"
        "{% endfor %}\n"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    cfg = json.loads((directory / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    (directory / "tokenizer_config.json").write_text(json.dumps(cfg))
    ours = load_tokenizer(directory)
    theirs = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(directory / "tokenizer.json"),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    theirs.chat_template = template
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    expected = theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours.apply_chat_template(messages) == expected


def test_chat_template_missing_names_path(tmp_path):
    directory, _ = _bpe_dir(tmp_path / "notemplate", template=False)
    with pytest.raises(TokenizerError, match=f"{directory / 'tokenizer.json'}: no chat template"):
        load_tokenizer(directory).apply_chat_template([{"role": "user", "content": "x"}])


def test_chat_template_jinja_file_wins(tmp_path):
    directory, _ = _bpe_dir(tmp_path / "jinja")
    (directory / "chat_template.jinja").write_text("{{ messages[0]['content'] }}!")
    tok = load_tokenizer(directory)
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]) == "x!"


# ---------------------------------------------------------------- sentencepiece


def test_sentencepiece_round_trip_and_ids(tmp_path):
    path = _sp_model(tmp_path)
    raw = spm.SentencePieceProcessor(model_file=path)
    tok = load_tokenizer(path)
    assert isinstance(tok, SentencePieceTokenizer)
    # sentencepiece defaults unk=0, bos=1, eos=2; the model was trained with pad=3.
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, 3)
    assert tok.vocab_size == raw.get_piece_size()
    text = "hello world the quick fox"
    ids = tok.encode(text)
    assert ids == raw.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode(text, add_bos=True) == [1, *ids]
    assert tok.decode([1, *ids, 2, 3, 3]) == text
    assert tok.decode([1, *ids, 2], skip_special=False) == "<s>" + text + "</s>"
    ids_b, mask = tok.batch_encode([text, "fox"], add_bos=True)
    n = len(ids) + 1
    assert ids_b.shape[1] == n
    assert ids_b[1, : n - len(tok.encode("fox")) - 1].tolist() == [3] * (
        n - len(tok.encode("fox")) - 1
    )
    assert mask[0].sum() == n


def test_sentencepiece_directory_with_config(tmp_path):
    path = _sp_model(tmp_path)
    directory = tmp_path / "ckpt"
    directory.mkdir()
    (directory / "tokenizer.model").write_bytes(open(path, "rb").read())
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"eos_token": "</s>", "bos_token": "<s>", "chat_template": "{{ bos_token }}x"})
    )
    tok = load_tokenizer(directory)
    assert isinstance(tok, SentencePieceTokenizer)
    assert tok.eos_id == 2 and tok.bos_id == 1
    assert tok.apply_chat_template([]) == "<s>x"


# ---------------------------------------------------------------- errors


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(TokenizerError, match=f"{tmp_path / 'missing'}: no such file"):
        load_tokenizer(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenizerError, match=f"{empty}: directory has neither"):
        load_tokenizer(empty)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match=f"{bad}: not a readable tokenizer.json"):
        load_tokenizer(bad)
    other = tmp_path / "vocab.txt"
    other.write_text("a")
    with pytest.raises(TokenizerError, match=f"{other}: unknown tokenizer file type"):
        load_tokenizer(other)
    broken_model = tmp_path / "broken.model"
    broken_model.write_bytes(b"\x00\x01garbage")
    with pytest.raises(TokenizerError, match=f"{broken_model}: not a readable sentencepiece"):
        load_tokenizer(broken_model)


def test_bad_config_names_path_and_token(tmp_path):
    directory, _ = _bpe_dir(tmp_path / "badcfg")
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<nope>"}))
    with pytest.raises(TokenizerError, match=r"eos_token '<nope>' is not in the vocabulary"):
        load_tokenizer(directory)
    (directory / "tokenizer_config.json").write_text("{")
    with pytest.raises(TokenizerError, match=r"tokenizer_config.json:1: invalid JSON"):
        load_tokenizer(directory)


def test_check_vocab_names_both_sizes():
    tok = CharTokenizer()
    check_vocab(tok, 99)
    check_vocab(tok, 128)  # a padded model vocabulary is fine
    with pytest.raises(TokenizerError, match="vocab_size 99 but the model has vocab_size 64"):
        check_vocab(tok, 64)


def test_default_add_bos_follows_the_checkpoint(tmp_path):
    directory, raw = _bpe_dir(tmp_path / "bos")
    assert not load_tokenizer(directory).default_add_bos
    # A Llama-3-style post-processor that prepends the bos token.
    raw.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)]
    )
    raw.save(str(directory / "tokenizer.json"))
    cfg = json.loads((directory / "tokenizer_config.json").read_text())
    cfg["bos_token"] = "<|im_start|>"
    (directory / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = load_tokenizer(directory)
    assert tok.default_add_bos and tok.bos_id == 1
    # encode adds bos only when asked, whatever the post-processor does.
    assert tok.encode("hello") == raw.encode("hello", add_special_tokens=False).ids
    assert tok.encode("hello", add_bos=True) == raw.encode("hello").ids
